"""dashboard room, I/O layer: the only module that reads InfluxDB for the fleet pages.

Reads run the parameterised Flux files in `dashboard/queries/` (user input only ever reaches a
query as a Flux parameter, never as query text) and return pandas frames or the core's
dataclasses, built by `dashboard.frames`; the writes are operators' actions (on alerts, and
retiring devices) into the ops bucket. The fleet, device inventory and alerts are read from the
state bucket, which outlives raw retention (docs/architecture.md). `FleetStore` takes its
client, so tests and the query benchmark use it directly. No Streamlit here: the cache is
`dashboard.data`'s.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision

from dashboard.auth import User, require_operator
from dashboard.frames import (
    BEGINNING,
    DEAD_LETTER_LIMIT,
    DEVICE_LOOKBACK,
    DEVICES_MARK,
    FUTURE_SKEW,
    METRIC_LOOKBACK_1H,
    NS_PER_SECOND,
    Connection,
    FleetView,
    Row,
    StoreUnavailableError,
    bool_window_rows,
    check_keys,
    check_metric,
    device_filter,
    ingest_stats_window,
    parse_series,
)
from dashboard.ranges import QueryPlan, Source, TimeRange
from edgewatch.alerts import (
    AlertRecord,
    fold_alerts,
    validate_action,
)
from edgewatch.contract import is_valid_metric_name
from edgewatch.health import (
    DeviceAction,
    fleet_health,
    last_heard_ns,
    retired_devices,
    validate_device_action,
)
from edgewatch.rows import (
    Heartbeat,
    parse_alert_actions,
    parse_alert_events,
    parse_device_actions,
    parse_heartbeat,
    parse_shadow,
)
from edgewatch.rows import time_ns as _ns
from edgewatch.schema import alert_action_line, device_action_line
from shared.flux import read_flux
from shared.influxql import InfluxQLClient, read_influxql

logger = logging.getLogger(__name__)

QUERIES_DIR = Path(__file__).parent / "queries"


# ------------------------------------------------------------------------------ the store


@functools.cache
def load_query(name: str) -> str:
    """The text of `queries/<name>.flux`, or of the shared one (fixed text: only parameters
    vary)."""
    return read_flux(QUERIES_DIR, name)


def render_query(name: str, devices: str | None = None) -> str:
    """A query's text, with `device_filter`'s predicate in place of `${devices}` if it has one.

    The predicate only ever names parameters (`_s0`, `_d0`, ...): no value reaches the text.
    """
    text = load_query(name)
    if DEVICES_MARK not in text:
        if devices is not None:
            raise ValueError(f"query {name} takes no device predicate")
        return text
    if devices is None:
        raise ValueError(f"query {name} needs a device predicate (device_filter)")
    return text.replace(DEVICES_MARK, devices)


def _is_timeout(error: BaseException) -> bool:
    """A read that ran past the client's timeout (urllib3 wraps it; walk the chain)."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, TimeoutError) or "timed out" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def query_failure_message(
    view: str, url: str, timeout_s: float, error: BaseException
) -> str | None:
    """What to say when InfluxDB answers but a query of `view` fails; None if it did not answer.

    A query past the dashboard's timeout, or past InfluxDB's query limits (memory, queue),
    is not an unreachable server: the page names the view, the limit and what to do.
    """
    text = str(getattr(error, "body", "") or "") + " " + str(error)
    lowered = text.lower()
    if _is_timeout(error):
        return (
            f"The {view} query ran past {timeout_s:g} s and was abandoned (InfluxDB at {url} "
            "answers). Narrow the view (fewer devices, a shorter range), or raise "
            "INFLUXDB_TIMEOUT_SECONDS; the next refresh tries again."
        )
    if "memory" in lowered and ("limit" in lowered or "allocat" in lowered):
        return (
            f"The {view} query needed more memory than InfluxDB at {url} allows one query "
            "(influxd --query-memory-bytes) and was stopped. Narrow the view (fewer devices, "
            "a shorter range)."
        )
    if "queue" in lowered and ("length" in lowered or "full" in lowered):
        return (
            f"InfluxDB at {url} is busy: its query queue is full (influxd --query-queue-size), "
            f"so the {view} query was refused. The next refresh tries again."
        )
    return None


def unreachable_message(url: str, error: BaseException) -> str:
    """What an operator reads when InfluxDB does not answer, with what to do about it."""
    # Only an HTTP answer has a status; a refused connection has none (and its text may well
    # contain "401" as part of a port number).
    status = getattr(error, "status", None)
    text = str(getattr(error, "body", "") or "")
    if status in (401, 403):
        return (
            f"InfluxDB at {url} refused the dashboard's token: set EDGEWATCH_DASHBOARD_TOKEN "
            '(or INFLUXDB_V2_TOKEN), e.g. `eval "$(edgewatch stack env --export)"`.'
        )
    if status == 404 and "bucket" in text.lower():
        return (
            f"InfluxDB at {url} lacks a bucket the dashboard reads: run `edgewatch stack up` "
            "to create the buckets, or check INFLUXDB_V2_BUCKET and EDGEWATCH_BUCKET_*."
        )
    return f"InfluxDB at {url} cannot be reached: start it with `edgewatch stack up`."


class FleetStore:
    """Reads the fleet from InfluxDB and records operators' alert actions."""

    def __init__(self, *, client: InfluxDBClient, connection: Connection) -> None:
        self._client = client
        self._conn = connection
        self._influxql: InfluxQLClient | None = None

    def _influxql_rows(self, name: str, database: str) -> list[dict[str, Any]]:
        """Run `shared/queries/<name>.influxql` on `database`; failures worded as `_run`'s."""
        if self._influxql is None:
            self._influxql = InfluxQLClient(
                url=self._conn.url, token=self._conn.token, timeout_s=self._conn.timeout_s
            )
        try:
            return self._influxql.rows(database, read_influxql(QUERIES_DIR, name))
        except Exception as exc:
            raise self._failure(name, exc) from exc

    def _failure(self, name: str, exc: Exception) -> StoreUnavailableError:
        """Any failure of a read is the store's, not the page's: said once, in words."""
        logger.warning("query %s failed against %s: %s", name, self._conn.url, exc)
        message = query_failure_message(name, self._conn.url, self._conn.timeout_s, exc)
        return StoreUnavailableError(message or unreachable_message(self._conn.url, exc))

    @property
    def connection(self) -> Connection:
        return self._conn

    def _query(
        self, name: str, params: Mapping[str, Any], *, devices: str | None = None
    ) -> list[dict[str, Any]]:
        return self._run(name, render_query(name, devices), params)

    def _run(self, name: str, text: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        try:
            tables = self._client.query_api().query(
                text,
                org=self._conn.org,
                # influxdb-client sends each parameter as a Flux option; the "_" keeps their
                # names clear of Flux's own (`limit`, `start`...).
                params={f"_{key}": value for key, value in params.items()},
            )
        except Exception as exc:
            raise self._failure(name, exc) from exc
        return [dict(record.values) for table in tables for record in table.records]

    def query(
        self, name: str, params: Mapping[str, Any], *, devices: str | None = None
    ) -> list[dict[str, Any]]:
        """Run `queries/<name>.flux` with `params` (for the other stores of this room)."""
        return self._query(name, params, devices=devices)

    def write_ops(self, record: str, what: str) -> None:
        """Store one operator action line in the ops bucket."""
        self._write_ops(record, what)

    # -- fleet

    def heartbeat(self, now: datetime) -> Heartbeat:
        rows = self._query(
            "ingest_heartbeat", {"bucket": self._conn.bucket, "start": now - DEVICE_LOOKBACK}
        )
        return parse_heartbeat(rows, self._conn.ingest_interval_s)

    def fleet(self, now_ns: int) -> FleetView:
        """Every device the state bucket knows, however long silent, with its health."""
        now = datetime.fromtimestamp(now_ns / NS_PER_SECOND, tz=UTC)
        snapshots, info = parse_shadow(
            self._influxql_rows("device_shadow", self._conn.bucket_state)
        )
        beat = self.heartbeat(now)
        health = fleet_health(
            snapshots,
            now_ns,
            ingest_last_report_ns=beat.last_ns,
            ingest_report_interval_s=beat.interval_s,
        )
        retired = retired_devices(
            self.device_actions(now), {(s.site, s.device): last_heard_ns(s) for s in snapshots}
        )
        return FleetView(
            now_ns=now_ns, health=tuple(health), info=info, heartbeat=beat, retired=retired
        )

    def device_actions(self, now: datetime) -> list[DeviceAction]:
        """Every retire and reinstate ever recorded, oldest first (operators' own, few)."""
        rows = self._query(
            "device_actions",
            {"bucket": self._conn.bucket_ops, "start": BEGINNING, "stop": now + FUTURE_SKEW},
        )
        return parse_device_actions(rows)

    def record_device_action(
        self,
        *,
        user: User,
        site: str,
        device: str,
        action: str,
        note: str = "",
        now_ns: int | None = None,
    ) -> None:
        """Retire or reinstate a device (`device_action` in the ops bucket), who, when, note."""
        # Checked here as well as in the page: a viewer must not act, whatever the UI shows.
        require_operator(user)
        validate_device_action(action, note, user.name)
        check_keys([(site, device)])
        record = device_action_line(
            site=site,
            device=device,
            action=action,
            user=user.name,
            note=note,
            ts_ns=now_ns if now_ns is not None else time.time_ns(),
        )
        self._write_ops(record, f"device action {action} on {site}/{device}")
        logger.info("device %s/%s: %s by %s", site, device, action, user.name)

    def _write_ops(self, record: str, what: str) -> None:
        try:
            with self._client.write_api(write_options=SYNCHRONOUS) as writer:
                writer.write(
                    bucket=self._conn.bucket_ops,
                    org=self._conn.org,
                    record=record,
                    write_precision=WritePrecision.NS,
                )
        except Exception as exc:
            logger.warning("%s not stored: %s", what, exc)
            raise StoreUnavailableError(unreachable_message(self._conn.url, exc)) from exc

    # -- alerts

    def alert_records(self, time_range: TimeRange) -> list[AlertRecord]:
        """Open alerts, whenever opened, and the alerts closed within the range.

        The fold reads every stored event and action up to the range's end (the state
        bucket keeps them forever): an alert's id comes from its opening raise, and that must
        not depend on where a window happens to start.
        """
        params = {"start": BEGINNING, "stop": time_range.stop}
        events = parse_alert_events(
            self._query("alert_events", {**params, "bucket": self._conn.bucket_state})
        )
        actions = parse_alert_actions(
            self._query("alert_actions", {**params, "bucket": self._conn.bucket_ops})
        )
        start_ns = _ns(time_range.start)
        return [
            r
            for r in fold_alerts(events, actions)
            if r.is_open or max(r.last_ns, r.closed_ns or 0) >= start_ns
        ]

    def record_action(
        self,
        *,
        user: User,
        alert: AlertRecord,
        action: str,
        note: str = "",
        snooze_until_ns: int = 0,
        now_ns: int | None = None,
    ) -> None:
        """Store one operator action (`alert_action` in the ops bucket) with who, when, note."""
        # Checked here as well as in the page: a viewer must not act, whatever the UI shows.
        require_operator(user)
        validate_action(action, note, user.name)
        if snooze_until_ns < 0:
            raise ValueError("snooze_until_ns must not be negative")
        record = alert_action_line(
            site=alert.site,
            device=alert.device,
            alert_type=alert.type,
            alert_id=alert.alert_id,
            action=action,
            user=user.name,
            note=note,
            snooze_until_ns=snooze_until_ns,
            ts_ns=now_ns if now_ns is not None else time.time_ns(),
        )
        self._write_ops(record, f"alert action {action} on {alert.alert_id}")
        logger.info("alert %s: %s by %s", alert.alert_id, action, user.name)

    # -- trends

    def metric_names(self, keys: Sequence[tuple[str, str]], now: datetime) -> list[str]:
        if not keys:
            return []
        predicate, device_params = device_filter(keys)
        rows = self._query(
            "metric_names",
            {
                "bucket": self._conn.bucket,
                "bucket_1h": self._conn.bucket_1h,
                "start": now - DEVICE_LOOKBACK,
                "start_1h": now - METRIC_LOOKBACK_1H,
                **device_params,
            },
            devices=predicate,
        )
        return sorted({str(r["_value"]) for r in rows if is_valid_metric_name(str(r["_value"]))})

    def series(
        self,
        keys: Sequence[tuple[str, str]],
        metric: str,
        time_range: TimeRange,
        plan: QueryPlan,
    ) -> pd.DataFrame:
        """Mean/min/max per window of one metric for several devices (at most 20).

        Rollups are floats: one query, aggregated in the storage engine. Raw data may hold a
        boolean metric, which the storage engine cannot aggregate: a first, cheap query reads
        the newest value of the metric per device (which devices have data, and its type),
        then numbers go through the pushed-down series_raw and booleans through
        series_raw_bool (as 0/1).
        """
        if not keys:
            return parse_series([])
        predicate, device_params = device_filter(keys)
        params = {
            "bucket": self._conn.bucket_for(plan.source),
            "start": time_range.start,
            "stop": time_range.stop,
            "every": plan.window,
            "metric": check_metric(metric),
        }
        if plan.source != Source.RAW:
            return parse_series(
                self._query("series_rollup", {**params, **device_params}, devices=predicate)
            )
        newest = self._query(
            "series_raw_last",
            {key: params[key] for key in ("bucket", "start", "stop", "metric")} | device_params,
            devices=predicate,
        )
        numeric: list[tuple[str, str]] = []
        flags: list[tuple[str, str]] = []
        for row in newest:
            key = (str(row["site"]), str(row["device"]))
            (flags if isinstance(row["_value"], bool) else numeric).append(key)
        rows: list[Row] = []
        if numeric:
            text, values = device_filter(numeric)
            rows += self._query("series_raw", {**params, **values}, devices=text)
        if flags:
            text, values = device_filter(flags)
            rows += bool_window_rows(
                self._query("series_raw_bool", {**params, **values}, devices=text)
            )
        return parse_series(rows)

    # -- one device

    def status_history(self, site: str, device: str, time_range: TimeRange) -> pd.DataFrame:
        check_keys([(site, device)])
        rows = self._query(
            "device_status_history",
            {
                "bucket": self._conn.bucket_state,
                "start": time_range.start,
                "stop": time_range.stop,
                "site": site,
                "device": device,
            },
        )
        return pd.DataFrame(
            [
                {
                    "time": pd.Timestamp(r["_time"]),
                    "state": r.get("state"),
                    "reason": r.get("reason") or "",
                }
                for r in rows
            ],
            columns=["time", "state", "reason"],
        )

    def recent_metrics(self, site: str, device: str, now: datetime) -> pd.DataFrame:
        check_keys([(site, device)])
        rows = self._query(
            "device_recent_metrics",
            {
                "bucket": self._conn.bucket,
                "start": now - DEVICE_LOOKBACK,
                "site": site,
                "device": device,
            },
        )
        frame = pd.DataFrame(
            [
                {"metric": r["_field"], "value": r["_value"], "time": pd.Timestamp(r["_time"])}
                for r in rows
            ],
            columns=["metric", "value", "time"],
        )
        return frame.sort_values("metric").reset_index(drop=True)

    # -- ingest

    def ingest_stats(self, time_range: TimeRange) -> pd.DataFrame:
        """Each instance's last report per window (windows shared by all instances)."""
        every = ingest_stats_window(time_range, self._conn.ingest_interval_s)
        rows = self._query(
            "ingest_stats",
            {
                "bucket": self._conn.bucket,
                "start": time_range.start,
                "stop": time_range.stop,
                "every": every,
            },
        )
        frame = pd.DataFrame(rows)
        if frame.empty:
            return pd.DataFrame(columns=["time", "instance"])
        frame = frame.rename(columns={"_time": "time"})
        frame["time"] = pd.to_datetime(frame["time"], utc=True)
        keep = [c for c in frame.columns if c not in ("result", "table")]
        return frame[keep].sort_values("time").reset_index(drop=True)

    def dead_letters(self, time_range: TimeRange, limit: int = DEAD_LETTER_LIMIT) -> pd.DataFrame:
        rows = self._query(
            "dead_letters",
            {
                "bucket": self._conn.bucket,
                "start": time_range.start,
                "stop": time_range.stop,
                "limit": int(limit),
            },
        )
        return pd.DataFrame(
            [
                {
                    "time": pd.Timestamp(r["_time"]),
                    "code": r.get("code"),
                    "topic": r.get("topic"),
                    "reason": r.get("reason"),
                    "payload": r.get("payload"),
                }
                for r in rows
            ],
            columns=["time", "code", "topic", "reason", "payload"],
        )

    def dead_letter_counts(self, time_range: TimeRange) -> dict[str, int]:
        rows = self._query(
            "dead_letter_counts",
            {"bucket": self._conn.bucket, "start": time_range.start, "stop": time_range.stop},
        )
        counts: dict[str, int] = {}
        for row in rows:
            code = str(row.get("code"))
            counts[code] = counts.get(code, 0) + int(row["_value"])
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    # -- audit

    def audit_rows(self, time_range: TimeRange) -> list[dict[str, Any]]:
        """Every operator action in the ops bucket over the range (see dashboard/audit.py)."""
        return self._query(
            "audit_trail",
            {"bucket": self._conn.bucket_ops, "start": time_range.start, "stop": time_range.stop},
        )
