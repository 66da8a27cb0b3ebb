"""rollup room: `edgewatch rollup`, the service that fills the 1-minute and 1-hour buckets.

Every interval it (1) aggregates the windows that closed since its stored progress (the
frontier) and (2) re-aggregates exactly the (device, hour) pairs the ingest marked dirty
because readings came late. All its state is in InfluxDB (`rollup_progress` and
`rollup_done` in the 1-minute bucket), so a restart, a crash or a second start loses nothing;
runs are sequential in one loop, so they never pile up. What to do is decided by the pure
`rollup.plan`; this module only runs the queries. Touches: InfluxDB (reads the raw bucket,
reads and writes the 1-minute and 1-hour buckets).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision

from edgewatch.schema import ROLLUP_HOUR_NS, line
from edgewatch.settings import Settings
from rollup.plan import (
    LEVEL_1H,
    LEVEL_1M,
    WINDOW_NS,
    DirtyJob,
    as_datetime,
    chunked,
    closed_until,
    device_params,
    dirty_jobs,
    first_progress,
    fold_to_hours,
    frontier_chunks,
    parse_dirty,
    points_statement,
    rollup_lines,
    seconds_ns,
    stats_from_points,
)
from shared.influxql import InfluxQLClient

logger = logging.getLogger(__name__)

QUERIES_DIR = Path(__file__).with_name("queries")
MEASUREMENT_PROGRESS = "rollup_progress"
MEASUREMENT_DONE = "rollup_done"
# Markers live in the raw bucket, so none is older than its retention (30 d); a day more
# covers a retention changed by hand.
DIRTY_LOOKBACK = timedelta(days=31)
PROGRESS_LOOKBACK = timedelta(days=400)
# The most dirty hours read per pass; the rest wait for the next pass of the same run.
DIRTY_PAGE = 20_000
WRITE_BATCH_LINES = 5000
Clock = Callable[[], int]


@cache
def query_text(name: str) -> str:
    return (QUERIES_DIR / f"{name}.flux").read_text()


@dataclass
class RunReport:
    """What one run did: for logs, the bench and the tests."""

    windows: dict[str, int] = field(default_factory=lambda: {LEVEL_1M: 0, LEVEL_1H: 0})
    queries: int = 0
    dirty_hours: int = 0
    seconds: float = 0.0
    progress: dict[str, int] = field(default_factory=dict)


class RollupStore:
    """The InfluxDB side of the rollups: the few queries and writes the service needs."""

    def __init__(self, *, client: InfluxDBClient, settings: Settings) -> None:
        self._client = client
        self._org = settings.influxdb_org
        self.raw = settings.influxdb_bucket
        self.bucket_1m = settings.influxdb_bucket_1m
        self.bucket_1h = settings.influxdb_bucket_1h
        secret = settings.rollup_token or settings.influxdb_token
        self._influxql = InfluxQLClient(
            url=settings.influxdb_url,
            token=secret.get_secret_value() if secret is not None else "",
            timeout_s=settings.rollup_timeout_seconds,
        )

    def close(self) -> None:
        self._influxql.close()

    def influxql(self, statement: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Run one InfluxQL statement on the raw bucket (its virtual v1 database); its series."""
        return self._influxql.series(self.raw, statement, params)

    def target(self, level: str) -> str:
        return self.bucket_1m if level == LEVEL_1M else self.bucket_1h

    def query(self, name: str, params: Mapping[str, object]) -> list[dict[str, Any]]:
        text = query_text(name)
        tables = self._client.query_api().query(
            text, org=self._org, params={f"_{key}": value for key, value in params.items()}
        )
        return [dict(record.values) for table in tables for record in table.records]

    def progress(self, now_ns: int) -> dict[str, int]:
        rows = self.query(
            "progress",
            {"bucket_1m": self.bucket_1m, "start": as_datetime(now_ns) - PROGRESS_LOOKBACK},
        )
        return {str(row["level"]): int(row["_value"]) for row in rows if row.get("level")}

    def devices(self, start_ns: int, stop_ns: int) -> list[str]:
        rows = self.query(
            "devices",
            {"raw": self.raw, "start": as_datetime(start_ns), "stop": as_datetime(stop_ns)},
        )
        return sorted({str(row["_value"]) for row in rows if row.get("_value")})

    def pending(self, now_ns: int, limit: int) -> list[dict[str, Any]]:
        now = as_datetime(now_ns)
        return self.query(
            "pending",
            {
                "raw": self.raw,
                "bucket_1m": self.bucket_1m,
                "start": now - DIRTY_LOOKBACK,
                "stop": now + timedelta(hours=2),
                "limit": limit,
            },
        )

    def write(self, lines: Sequence[str], bucket: str | None = None) -> None:
        if not lines:
            return
        with self._client.write_api(write_options=SYNCHRONOUS) as writer:
            for start in range(0, len(lines), WRITE_BATCH_LINES):
                writer.write(
                    bucket=bucket or self.bucket_1m,
                    org=self._org,
                    record="\n".join(lines[start : start + WRITE_BATCH_LINES]),
                    write_precision=WritePrecision.NS,
                )

    def write_progress(self, level: str, through_ns: int) -> None:
        self.write(
            [line(MEASUREMENT_PROGRESS, {"level": level}, {"through_ns": through_ns}, through_ns)]
        )


class RollupService:
    """The loop: one run per interval, each run frontier first, then the dirty hours."""

    def __init__(
        self,
        *,
        store: RollupStore,
        settings: Settings,
        clock: Clock = time.time_ns,
        stop_event: threading.Event | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._interval_s = settings.rollup_interval_seconds
        self._grace_ns = seconds_ns(settings.rollup_grace_seconds)
        self._catch_up_ns = seconds_ns(settings.rollup_first_catch_up_seconds)
        self._chunk = settings.rollup_devices_per_query
        self._stop = stop_event or threading.Event()
        # After InfluxDB failed us, the frontier waits this long once it answers again, so that
        # what the ingest held meanwhile is stored before its windows are aggregated.
        self._hold_frontier_until_ns = 0
        self._failed = False

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- the frontier

    def start_progress(self, now_ns: int, progress: dict[str, int]) -> None:
        """A level without stored progress starts `first_catch_up` back, stored at once: the
        dirty hours below it are the dirty pass's, the windows from it on the frontier's."""
        for level in (LEVEL_1M, LEVEL_1H):
            if level not in progress:
                through = first_progress(now_ns, level, self._grace_ns, self._catch_up_ns)
                self._store.write_progress(level, through)
                progress[level] = through

    def advance(self, level: str, now_ns: int, progress: dict[str, int], report: RunReport) -> None:
        until = closed_until(now_ns, level, self._grace_ns)
        through = progress[level]
        for start, stop in frontier_chunks(through, until, level):
            if self.stopping:
                return
            self.aggregate(level, start, stop, self._store.devices(start, stop), report)
            self._store.write_progress(level, stop)
            progress[level] = stop
            report.windows[level] += (stop - start) // WINDOW_NS[level]

    def aggregate(
        self,
        level: str,
        start_ns: int,
        stop_ns: int,
        devices: Sequence[str],
        report: RunReport,
        *,
        with_hours: bool = False,
    ) -> None:
        """Aggregate [start, stop) of `level` for the devices, a device chunk per query.

        `with_hours` (minutes of whole hours only): also write the hours, folded from the
        minutes (exact: count-weighted), instead of reading the raw points a second time.
        """
        if not devices or stop_ns <= start_ns:
            return
        for part in chunked(devices, self._chunk):
            series = self._store.influxql(
                points_statement(start_ns, stop_ns, part), device_params(part)
            )
            report.queries += 1
            stats, true_counts = stats_from_points(series, WINDOW_NS[level])
            self._store.write(rollup_lines(stats, true_counts), self._store.target(level))
            if with_hours:
                self._store.write(
                    rollup_lines(*fold_to_hours(stats, true_counts)), self._store.bucket_1h
                )

    # -- the dirty hours

    def backfill_dirty(self, now_ns: int, progress: dict[str, int], report: RunReport) -> None:
        if LEVEL_1M not in progress or LEVEL_1H not in progress:
            return  # no frontier yet: nothing tells the dirty hours from the frontier's windows
        while not self.stopping:
            marks = parse_dirty(self._store.pending(now_ns, DIRTY_PAGE))
            if not marks:
                return
            jobs = dirty_jobs(
                marks,
                through_1m_ns=progress.get(LEVEL_1M, 0),
                through_1h_ns=progress.get(LEVEL_1H, 0),
                chunk_size=self._chunk,
            )
            for job in jobs:
                if self.stopping:
                    return
                self.redo(job, report)
            if len(marks) < DIRTY_PAGE:
                return

    def redo(self, job: DirtyJob, report: RunReport) -> None:
        """Re-aggregate one dirty job, then record it done (the marker values it saw)."""
        # A closed hour lies below the minute frontier too, so all its minutes are read here.
        self.aggregate(
            LEVEL_1M,
            job.hour_ns,
            job.minutes_stop_ns,
            job.devices,
            report,
            with_hours=job.hour_closed and job.minutes_stop_ns == job.hour_ns + ROLLUP_HOUR_NS,
        )
        self._store.write(
            [
                line(
                    MEASUREMENT_DONE,
                    {"site": mark.site, "device": mark.device},
                    {"received_ns": mark.received_ns},
                    mark.hour_ns,
                )
                for mark in job.marks
            ]
        )
        report.dirty_hours += len(job.marks)
        logger.info(
            "rollup: re-aggregated hour %s for %d device(s)",
            as_datetime(job.hour_ns).isoformat(),
            len(job.devices),
        )

    def backfill_hours(self, now_ns: int, hours: int) -> RunReport:
        """Re-aggregate the last `hours` closed hours of every device, at both levels."""
        started = time.monotonic()
        report = RunReport()
        stop = closed_until(now_ns, LEVEL_1H, self._grace_ns)
        for hour in range(stop - hours * ROLLUP_HOUR_NS, stop, ROLLUP_HOUR_NS):
            if self.stopping:
                break
            devices = self._store.devices(hour, hour + ROLLUP_HOUR_NS)
            self.aggregate(LEVEL_1M, hour, hour + ROLLUP_HOUR_NS, devices, report, with_hours=True)
            report.windows[LEVEL_1M] += 60
            report.windows[LEVEL_1H] += 1
        report.seconds = time.monotonic() - started
        return report

    # -- one run, and the loop

    def run_once(self) -> RunReport:
        started = time.monotonic()
        now_ns = self._clock()
        report = RunReport()
        progress = self._store.progress(now_ns)
        self.start_progress(now_ns, progress)
        # Late data first: it has a promise (in the rollups within 3 minutes), while the
        # frontier only has to keep up; on a large fleet it catches up minutes in one pass at
        # about the cost of one (the work is per series more than per point).
        self.backfill_dirty(now_ns, progress, report)
        if now_ns >= self._hold_frontier_until_ns:
            for level in (LEVEL_1M, LEVEL_1H):
                self.advance(level, now_ns, progress, report)
        report.progress = dict(progress)
        report.seconds = time.monotonic() - started
        return report

    def run_forever(self) -> None:
        """Until stop(): a run, then sleep what is left of the interval (never overlapping)."""
        logger.info("rollup service started: every %.0f s", self._interval_s)
        while not self.stopping:
            started = time.monotonic()
            try:
                report = self.run_once()
            except Exception as exc:
                # InfluxDB down or refusing: nothing advanced, the next run starts from the
                # stored progress. Never a crash: the service outlives the outage.
                logger.warning("rollup run failed (will retry): %s", exc)
                if not self._failed:
                    self._failed = True
                self._hold_frontier_until_ns = 0
            else:
                if self._failed:
                    # InfluxDB answers again: let the ingest store what it held first.
                    self._failed = False
                    self._hold_frontier_until_ns = self._clock() + seconds_ns(
                        max(self._interval_s, 60.0)
                    )
                if report.windows[LEVEL_1M] or report.windows[LEVEL_1H] or report.dirty_hours:
                    logger.info(
                        "rollup run: %d minute(s), %d hour(s), %d dirty device-hour(s), "
                        "%d queries in %.2f s",
                        report.windows[LEVEL_1M],
                        report.windows[LEVEL_1H],
                        report.dirty_hours,
                        report.queries,
                        report.seconds,
                    )
            self._stop.wait(max(0.0, self._interval_s - (time.monotonic() - started)))
        logger.info("rollup service stopped")


def make_client(settings: Settings) -> InfluxDBClient:
    """The rollup service's InfluxDB client: its own token if set, else the general one."""
    secret = settings.rollup_token or settings.influxdb_token
    if secret is None:
        raise RuntimeError(
            "EDGEWATCH_ROLLUP_TOKEN (or INFLUXDB_V2_TOKEN) is not set: run "
            '`eval "$(edgewatch stack env --export)"` or set it to a token that reads the raw '
            "bucket and writes the rollup buckets"
        )
    return InfluxDBClient(
        url=settings.influxdb_url,
        token=secret.get_secret_value(),
        org=settings.influxdb_org,
        timeout=int(settings.rollup_timeout_seconds * 1000),
    )
