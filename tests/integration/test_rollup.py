"""The rollup service on real influxd (and Mosquitto + ingest where the path needs them).

Late data of any age reaches the 1-minute and 1-hour rollups; booleans are rolled up as 0/1;
a minute's mean is the mean of its raw points and an hour's the mean of its raw points; a
killed service loses no dirty hour; and the dashboard reads the rollups for old ranges.
"""

from __future__ import annotations

import json
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision

from dashboard import data
from dashboard.ranges import Source, TimeRange, plan_for
from edgewatch.models import Reading, Telemetry
from edgewatch.schema import message_lines
from edgewatch.settings import Settings
from rollup.plan import datetime_ns
from rollup.service import RollupService, RollupStore, make_client
from stack.processes import MosquittoProcess
from stack.testing import InfluxFixture
from tests.integration.ingest_support import (
    REPO_ROOT,
    Publisher,
    ThreadedIngest,
    settings_env,
    wait_until,
)

pytestmark = pytest.mark.integration

NS = 1_000_000_000
MINUTE_NS = 60 * NS
HOUR_NS = 60 * MINUTE_NS
# The promise: late data is in both rollups within 3 minutes of being stored.
LATE_DATA_DEADLINE_SECONDS = 180.0
SettingsFactory = Callable[..., Settings]


def _site() -> str:
    return f"r{secrets.token_hex(4)}"


def rollup_settings(make_settings: SettingsFactory, influxdb: InfluxFixture, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "rollup_interval_seconds": 1.0,
        # The frontier starts at now: what these tests check arrives late, via the markers.
        "rollup_first_catch_up_seconds": 0.0,
    }
    values.update(kw)
    return make_settings(None, influxdb, **values)


class ThreadedRollup:
    """The rollup service in a thread of the test process, with a short interval."""

    def __init__(self, settings: Settings) -> None:
        self._client = make_client(settings)
        self._store = RollupStore(client=self._client, settings=settings)
        self.service = RollupService(store=self._store, settings=settings)
        self._thread = threading.Thread(target=self.service.run_forever, daemon=True)

    def __enter__(self) -> ThreadedRollup:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.service.stop()
        self._thread.join(timeout=120)
        self._store.close()
        self._client.close()  # type: ignore[no-untyped-call]
        assert not self._thread.is_alive(), "rollup service did not stop"


def query(fx: InfluxFixture, flux: str, **params: object) -> list[dict[str, Any]]:
    with InfluxDBClient(url=fx.url, token=fx.admin_token, org=fx.org, timeout=60_000) as client:
        tables = client.query_api().query(flux, org=fx.org, params=params)
        return [dict(r.values) for t in tables for r in t.records]


def write(fx: InfluxFixture, token: str, bucket: str, lines: list[str]) -> None:
    with (
        InfluxDBClient(url=fx.url, token=token, org=fx.org, timeout=60_000) as client,
        client.write_api(write_options=SYNCHRONOUS) as writer,
    ):
        writer.write(bucket=bucket, org=fx.org, record=lines, write_precision=WritePrecision.NS)


ROLLUP_ROWS = """
from(bucket: bucket)
    |> range(start: start, stop: stop)
    |> filter(fn: (r) => r._measurement == "telemetry" and r.site == site)
"""


def rollup_stats(
    fx: InfluxFixture, bucket: str, site: str, start: datetime, stop: datetime
) -> dict[tuple[str, str, int, str], float]:
    """(device, field, window ns, stat) -> value in a rollup bucket."""
    rows = query(fx, ROLLUP_ROWS, bucket=bucket, site=site, start=start, stop=stop)
    return {
        (str(r["device"]), str(r["_field"]), datetime_ns(r["_time"]), str(r["stat"])): float(
            r["_value"]
        )
        for r in rows
    }


def late_lines(site: str, device: str, readings: list[Reading], received_ns: int) -> list[str]:
    """What the ingest writes for a late telemetry message: readings, seq, seen, markers."""
    return message_lines(
        Telemetry(site=site, device=device, readings=tuple(readings)), received_ns=received_ns
    )


def windows_of(
    values: dict[int, list[float]], window_ns: int
) -> dict[int, tuple[float, float, float, int]]:
    """(mean, min, max, count) per window from raw (ts -> values) points."""
    grouped: dict[int, list[float]] = defaultdict(list)
    for ts, vals in values.items():
        grouped[ts - ts % window_ns].extend(vals)
    return {w: (sum(v) / len(v), min(v), max(v), len(v)) for w, v in grouped.items()}


# --------------------------------------------------------------------------------- tests


def test_a_replay_of_two_to_three_hour_old_readings_reaches_both_rollups(
    broker: MosquittoProcess, influxdb: InfluxFixture, make_settings: SettingsFactory
) -> None:
    settings = make_settings(broker, influxdb)
    rollup = rollup_settings(make_settings, influxdb)
    site, device = _site(), "cam-1"
    now = time.time_ns()
    start = now - 3 * HOUR_NS
    readings = [
        {"ts": (start + i * MINUTE_NS) / NS, "seq": i, "metrics": {"cpu_temp_c": 40.0 + i}}
        for i in range(60)
    ]
    minutes = {(start + i * MINUTE_NS) // MINUTE_NS * MINUTE_NS for i in range(60)}
    hours = {m // HOUR_NS * HOUR_NS for m in minutes}
    expected_hour_mean = {
        h: sum(40.0 + i for i in range(60) if (start + i * MINUTE_NS) // HOUR_NS * HOUR_NS == h)
        / sum(1 for i in range(60) if (start + i * MINUTE_NS) // HOUR_NS * HOUR_NS == h)
        for h in hours
    }
    window = (
        datetime.fromtimestamp((start - HOUR_NS) / NS, tz=UTC),
        datetime.fromtimestamp((now + MINUTE_NS) / NS, tz=UTC),
    )
    with ThreadedRollup(rollup), ThreadedIngest(settings):
        with Publisher(broker.host, broker.port, f"pub-{site}") as publisher:
            publisher.publish(
                f"{settings.mqtt_topic_root}/{site}/{device}/telemetry",
                json.dumps({"batch": readings}).encode(),
            )
            publisher.wait_all()

        def stored() -> bool:
            rows = query(
                influxdb,
                "from(bucket: b) |> range(start: s) |> filter(fn: (r) => r._measurement == "
                '"telemetry" and r.site == site) |> count()',
                b=influxdb.bucket,
                s=window[0],
                site=site,
            )
            return sum(int(r["_value"]) for r in rows) == 60

        wait_until(stored, 60, "the replay in the raw bucket", poll=0.5)

        def rolled_up() -> bool:
            one_minute = rollup_stats(influxdb, influxdb.bucket_1m, site, *window)
            one_hour = rollup_stats(influxdb, influxdb.bucket_1h, site, *window)
            got_minutes = {w for (_, _, w, stat) in one_minute if stat == "mean"}
            got_hours = {w for (_, _, w, stat) in one_hour if stat == "mean"}
            return got_minutes == minutes and got_hours == hours

        wait_until(rolled_up, LATE_DATA_DEADLINE_SECONDS, "the replay in both rollups", poll=2)
    one_minute = rollup_stats(influxdb, influxdb.bucket_1m, site, *window)
    one_hour = rollup_stats(influxdb, influxdb.bucket_1h, site, *window)
    for i in range(60):
        minute = (start + i * MINUTE_NS) // MINUTE_NS * MINUTE_NS
        for stat in ("mean", "min", "max"):
            assert one_minute[(device, "cpu_temp_c", minute, stat)] == 40.0 + i
        assert one_minute[(device, "cpu_temp_c", minute, "count")] == 1.0
    for hour, mean in expected_hour_mean.items():
        assert one_hour[(device, "cpu_temp_c", hour, "mean")] == pytest.approx(mean, rel=1e-12)
    markers = query(
        influxdb,
        "from(bucket: b) |> range(start: s) |> filter(fn: (r) => r._measurement == "
        '"rollup_dirty" and r.site == site)',
        b=influxdb.bucket,
        s=window[0],
        site=site,
    )
    assert {datetime_ns(r["_time"]) for r in markers} == hours


def test_minutes_and_hours_equal_their_raw_points_and_booleans_are_rolled_up(
    influxdb: InfluxFixture, make_settings: SettingsFactory
) -> None:
    settings = rollup_settings(make_settings, influxdb, rollup_devices_per_query=2)
    site = _site()
    rng = random.Random(7)
    now = time.time_ns()
    first_hour = now // HOUR_NS * HOUR_NS - 5 * HOUR_NS
    raw: dict[str, dict[str, dict[int, list[float]]]] = {}
    lines: list[str] = []
    for device in ("a", "b", "c"):
        readings = []
        for step in range(2 * 360):  # two hours, every 10 s, plus jitter
            ts = first_hour + step * 10 * NS + rng.randrange(0, 9 * NS)
            temp, ok = round(rng.uniform(20, 90), 3), rng.random() < 0.7
            readings.append(Reading(ts_ns=ts, metrics={"cpu_temp_c": temp, "camera_ok": ok}))
            raw.setdefault(device, {}).setdefault("cpu_temp_c", {})[ts] = [temp]
            raw[device].setdefault("camera_ok", {})[ts] = [1.0 if ok else 0.0]
        lines += late_lines(site, device, readings, received_ns=now)
    write(influxdb, influxdb.ingest_token, influxdb.bucket, lines)
    window = (
        datetime.fromtimestamp((first_hour - HOUR_NS) / NS, tz=UTC),
        datetime.fromtimestamp(now / NS, tz=UTC),
    )
    with (
        make_client(settings) as client,
        closing(RollupStore(client=client, settings=settings)) as store,
    ):
        report = RollupService(store=store, settings=settings).run_once()
    assert report.dirty_hours >= 6
    one_minute = rollup_stats(influxdb, influxdb.bucket_1m, site, *window)
    one_hour = rollup_stats(influxdb, influxdb.bucket_1h, site, *window)
    for device, fields in raw.items():
        for name, points in fields.items():
            for window_ns, table in ((MINUTE_NS, one_minute), (HOUR_NS, one_hour)):
                expected = windows_of(points, window_ns)
                assert len(expected) == (120 if window_ns == MINUTE_NS else 2)
                for start, (mean, low, high, count) in expected.items():
                    key = (device, name, start)
                    assert table[(*key, "mean")] == pytest.approx(mean, rel=1e-9), key
                    assert table[(*key, "min")] == low
                    assert table[(*key, "max")] == high
                    assert table[(*key, "count")] == count

    # The dashboard reads the boolean's rollups: share of true as the line, 0/1 as the band.
    store_range = TimeRange(
        start=datetime.fromtimestamp(now / NS, tz=UTC) - timedelta(days=7),
        stop=datetime.fromtimestamp(now / NS, tz=UTC),
    )
    plan = plan_for(store_range)
    assert plan.source == Source.ROLLUP_1M
    connection = data.Connection(
        url=influxdb.url, org=influxdb.org, token=influxdb.dashboard_token,
        bucket=influxdb.bucket, bucket_1m=influxdb.bucket_1m, bucket_1h=influxdb.bucket_1h,
        bucket_ops=influxdb.bucket_ops, timeout_s=30.0, ingest_interval_s=5.0,
    )  # fmt: skip
    keys = [(site, "a"), (site, "b")]
    with InfluxDBClient(url=influxdb.url, token=influxdb.dashboard_token, org=influxdb.org) as c:
        series = data.FleetStore(client=c, connection=connection).series(
            keys, "camera_ok", store_range, plan
        )
    assert set(series["device"]) == {"a", "b"}
    assert series["mean"].between(0.0, 1.0).all()
    assert set(series["min"]) | set(series["max"]) <= {0.0, 1.0}


class RollupProcess:
    """`edgewatch rollup` as a child process (so it can be killed -9), log in a temp dir."""

    def __init__(self, settings: Settings) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="edgewatch-rollup-test-")
        self.log_path = Path(self._dir.name) / "rollup.log"
        self._env = settings_env(settings)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "edgewatch.cli", "rollup"],
                cwd=REPO_ROOT,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def terminate(self) -> int:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGTERM)
        return self._proc.wait(timeout=120)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        self.kill()
        self._dir.cleanup()


@pytest.fixture
def rollup_process(
    influxdb: InfluxFixture, make_settings: SettingsFactory
) -> Iterator[RollupProcess]:
    # One device per query: many small steps, so a kill lands between two of them.
    proc = RollupProcess(rollup_settings(make_settings, influxdb, rollup_devices_per_query=1))
    try:
        yield proc
    finally:
        proc.close()


def test_a_killed_rollup_service_loses_no_dirty_hour(
    influxdb: InfluxFixture, rollup_process: RollupProcess
) -> None:
    site = _site()
    now = time.time_ns()
    first_hour = now // HOUR_NS * HOUR_NS - 6 * HOUR_NS
    devices = [f"d{i}" for i in range(8)]
    lines: list[str] = []
    for device in devices:
        readings = [
            Reading(ts_ns=first_hour + m * MINUTE_NS + 7 * NS, metrics={"v": float(m)})
            for m in range(3 * 60)
        ]
        lines += late_lines(site, device, readings, received_ns=now)
    write(influxdb, influxdb.ingest_token, influxdb.bucket, lines)
    window = (
        datetime.fromtimestamp((first_hour - HOUR_NS) / NS, tz=UTC),
        datetime.fromtimestamp(now / NS, tz=UTC),
    )
    rollup_process.start()
    wait_until(lambda: "re-aggregated hour" in rollup_process.log_text(), 120, "a first dirty hour")
    rollup_process.kill()  # -9, mid-run: some hours done, some not, one maybe half-written
    rollup_process.start()

    def complete() -> bool:
        one_minute = rollup_stats(influxdb, influxdb.bucket_1m, site, *window)
        one_hour = rollup_stats(influxdb, influxdb.bucket_1h, site, *window)
        minutes = {(d, w) for (d, _, w, stat) in one_minute if stat == "mean"}
        hours = {(d, w) for (d, _, w, stat) in one_hour if stat == "mean"}
        return len(minutes) == len(devices) * 180 and len(hours) == len(devices) * 3

    wait_until(complete, LATE_DATA_DEADLINE_SECONDS, "every dirty hour after the restart", poll=2)
    wait_until(
        lambda: rollup_process.log_text().count("rollup service started") >= 2,
        60,
        "the restarted service",
        poll=0.2,
    )
    assert rollup_process.terminate() == 0  # SIGTERM: a clean stop
    one_hour = rollup_stats(influxdb, influxdb.bucket_1h, site, *window)
    for device in devices:
        for h in range(3):
            expected = sum(range(h * 60, h * 60 + 60)) / 60
            assert one_hour[(device, "v", first_hour + h * HOUR_NS, "mean")] == expected


def test_a_day_forty_days_ago_is_read_from_the_minute_rollups(influxdb: InfluxFixture) -> None:
    site = _site()
    now = datetime.now(UTC)
    day_start = (now - timedelta(days=40)).replace(hour=0, minute=0, second=0, microsecond=0)
    start_ns = datetime_ns(day_start)
    lines = [
        f"telemetry,device=d,site={site},stat={stat} cpu_temp_c={value} {start_ns + m * MINUTE_NS}"
        for m in range(0, 24 * 60, 10)
        for stat, value in (("mean", 50.0), ("min", 40.0), ("max", 60.0))
    ]
    write(influxdb, influxdb.admin_token, influxdb.bucket_1m, lines)
    day = TimeRange(start=day_start, stop=day_start + timedelta(days=1))
    plan = plan_for(day, now=now)
    assert plan.source == Source.ROLLUP_1M
    connection = data.Connection(
        url=influxdb.url, org=influxdb.org, token=influxdb.dashboard_token,
        bucket=influxdb.bucket, bucket_1m=influxdb.bucket_1m, bucket_1h=influxdb.bucket_1h,
        bucket_ops=influxdb.bucket_ops, timeout_s=30.0, ingest_interval_s=5.0,
    )  # fmt: skip
    with InfluxDBClient(url=influxdb.url, token=influxdb.dashboard_token, org=influxdb.org) as c:
        series = data.FleetStore(client=c, connection=connection).series(
            [(site, "d")], "cpu_temp_c", day, plan
        )
    assert len(series) == 144
    assert set(series["mean"]) == {50.0}
