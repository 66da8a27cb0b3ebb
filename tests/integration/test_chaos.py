"""The chaos test: a simulated fleet with every fault, while the path around it breaks.

The simulator (every fault of edge/devices.py, plus one site cut off for more than 10
minutes of its own time) runs on an accelerated device clock set in the past, through real
Mosquitto, the real ingest as a separate process with its journal, real influxd and the
rollup service. Meanwhile the ingest is killed -9 twice and restarted, influxd is stopped for
20 s and restarted on its data dir, and the broker restarts (persistence on). Then the pure
reconciler (bench/reconcile.py) checks the store against the simulator's ground truth and the
test prints its table (`pytest -s`): every count must be equal.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from influxdb_client import InfluxDBClient

from bench.reconcile import (
    Check,
    GroundTruth,
    RawPoint,
    RollupMean,
    SentReading,
    Stored,
    StoredSeq,
    code_counts,
    format_table,
    reconcile,
)
from dashboard import data
from dashboard.ranges import TimeRange
from edge.agent import EdgeAgent
from edge.devices import DeviceKind, Fault, FaultKind
from edge.simulator import FleetSimulator, SimConfig
from edge.spool import Spool, SpoolItem
from edge.transport import paho_factory
from edgewatch.models import DeviceInfo
from edgewatch.settings import Settings
from rollup.plan import LEVEL_1H, LEVEL_1M
from stack.processes import MosquittoProcess
from stack.testing import InfluxFixture
from tests.integration.ingest_support import IngestProcess, wait_until
from tests.integration.test_rollup import ThreadedRollup

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NS = 1_000_000_000
HOUR_NS = 3600 * NS
SettingsFactory = Callable[..., Settings]

SPEED = 8.0  # device seconds per real second
INTERVAL_S = 5.0  # device seconds between readings
REAL_SECONDS = 150.0
SITES, DEVICES_PER_SITE = 3, 4
# One site loses its link from step 60 to step 200: 700 s of its own time (> 10 min).
CUT_FIRST_STEP, CUT_END_STEP = 60, 200
CAMERA_LOSS_STEPS = (100, 130)
# The malformed payloads of edge/devices.py and the code each must be dead-lettered with.
EXPECTED_CODE: dict[bytes, str] = {
    b"temp=61.5": "json",
    b'{"metrics": {"cpu_temp_c": "hot"}}': "schema",
    b'{"metrics": {"cpu_temp_c": NaN}}': "schema",
    b'{"metrics": {"CPU Temp": 61.5}}': "schema",
    b'{"metrics": {}}': "schema",
    b'{"seq": -1, "metrics": {"cpu_temp_c": 61.5}}': "schema",
    b"[1, 2, 3]": "schema",
}


class DeviceClock:
    """An accelerated clock: `SPEED` device seconds per real second, starting in the past."""

    def __init__(self, speed: float, start_ns: int) -> None:
        self._speed = speed
        self._start_ns = start_ns
        self._m0 = time.monotonic()

    def monotonic(self) -> float:
        return self._m0 + (time.monotonic() - self._m0) * self._speed

    def clock_ns(self) -> int:
        return self._start_ns + int((time.monotonic() - self._m0) * self._speed * NS)


class RecordingSpool(Spool):
    """A device's spool that also notes every reading it takes: the ground truth."""

    def __init__(self, path: Path, log: list[SentReading], lock: threading.Lock) -> None:
        super().__init__(path)
        self._site, self._device = path.name.removesuffix(".sqlite").split(".", 1)
        self._truth = log
        self._truth_lock = lock

    def append_reading(
        self, metrics: Mapping[str, float | bool], *, ts_ns: int, seq: int | None = None
    ) -> SpoolItem:
        item = super().append_reading(metrics, ts_ns=ts_ns, seq=seq)
        with self._truth_lock:
            self._truth.append(SentReading(self._site, self._device, ts_ns, item.body["seq"]))
        return item


def _query(fx: InfluxFixture, flux: str, **params: object) -> list[dict[str, Any]]:
    with InfluxDBClient(url=fx.url, token=fx.admin_token, org=fx.org, timeout=120_000) as c:
        tables = c.query_api().query(flux, org=fx.org, params=params)
    return [dict(r.values) for t in tables for r in t.records]


WITH_NS = "|> map(fn: (r) => ({r with ns: int(v: r._time)}))"


def stored_state(fx: InfluxFixture, settings: Settings) -> Stored:
    seqs = tuple(
        StoredSeq(r["site"], r["device"], int(r["ns"]), int(r["_value"]))
        for r in _query(
            fx,
            "from(bucket: b) |> range(start: 0) |> filter(fn: (r) => r._measurement == "
            '"telemetry_seq")' + WITH_NS,
            b=fx.bucket,
        )
    )
    raw = tuple(
        RawPoint(r["site"], r["device"], r["_field"], int(r["ns"]), float(r["_value"]))
        for r in _query(
            fx,
            "from(bucket: b) |> range(start: 0) |> filter(fn: (r) => r._measurement == "
            '"telemetry")' + WITH_NS,
            b=fx.bucket,
        )
    )
    progress = {
        str(r["level"]): int(r["_value"])
        for r in _query(
            fx,
            "from(bucket: b) |> range(start: 0) |> filter(fn: (r) => r._measurement == "
            '"rollup_progress" and r._field == "through_ns") |> last()',
            b=fx.bucket_1m,
        )
    }
    dead = {
        str(r["code"]): int(r["_value"])
        for r in _query(
            fx,
            "from(bucket: b) |> range(start: 0) |> filter(fn: (r) => r._measurement == "
            '"dead_letter" and r._field == "topic") |> group(columns: ["code"]) |> count()',
            b=fx.bucket,
        )
    }
    with InfluxDBClient(url=fx.url, token=fx.admin_token, org=fx.org, timeout=120_000) as c:
        store = data.FleetStore(client=c, connection=data.Connection.from_settings(settings))
        now = datetime.now(tz=UTC)
        records = store.alert_records(TimeRange(start=now - timedelta(days=1), stop=now))
    return Stored(
        seqs=seqs,
        raw=raw,
        rollup_1m=_rollup(fx, fx.bucket_1m),
        rollup_1h=_rollup(fx, fx.bucket_1h),
        progress_1m_ns=progress.get(LEVEL_1M, 0),
        progress_1h_ns=progress.get(LEVEL_1H, 0),
        open_alerts=frozenset((r.site, r.device, r.type) for r in records if r.is_open),
        dead_letters=dead,
    )


def _rollup(fx: InfluxFixture, bucket: str) -> tuple[RollupMean, ...]:
    rows = _query(
        fx,
        'from(bucket: b) |> range(start: 0) |> filter(fn: (r) => r._measurement == "telemetry"'
        ' and (r.stat == "mean" or r.stat == "count"))' + WITH_NS,
        b=bucket,
    )
    stats: dict[tuple[str, str, str, int], dict[str, float]] = {}
    for r in rows:
        key = (r["site"], r["device"], r["_field"], int(r["ns"]))
        stats.setdefault(key, {})[r["stat"]] = float(r["_value"])
    return tuple(
        RollupMean(*key, mean=s["mean"], count=int(s.get("count", 0)))
        for key, s in stats.items()
        if "mean" in s
    )


def drain_spools(sim: FleetSimulator, settings: Settings, spool_dir: Path) -> None:
    """Devices left crashed or cut off at the end come back and send what they hold."""
    factory = paho_factory(settings, max_in_flight=100)
    for spec in sim.specs:
        spool = Spool(spool_dir / f"{spec.site}.{spec.device}.sqlite")
        try:
            if spool.depth == 0:
                continue
            agent = EdgeAgent(
                site=spec.site,
                device=spec.device,
                spool=spool,
                transport_factory=factory,
                topic_root=settings.mqtt_topic_root,
                info=DeviceInfo(interval_s=INTERVAL_S),
            )
            agent.start()
            deadline = time.monotonic() + 60
            while agent.spool_depth > 0 and time.monotonic() < deadline:
                agent.pump(timeout_s=0.2)
            agent.stop(timeout_s=5.0)
        finally:
            spool.close()


def device_open_alerts(sim: FleetSimulator, spool_dir: Path) -> frozenset[tuple[str, str, str]]:
    """What each device's own alert rules hold raised at the end (persisted in its spool)."""
    found = set()
    for spec in sim.specs:
        with Spool(spool_dir / f"{spec.site}.{spec.device}.sqlite") as spool:
            found |= {(spec.site, spec.device, kind) for kind in spool.raised_alerts()}
    return frozenset(found)


def offline_checks(
    truth: list[SentReading], stored: Stored | None, site: str, clock_start_ns: int
) -> list[Check]:
    """The readings the cut site took while cut off (well inside the cut, by its own clock):
    more than 10 minutes' worth per device, and each stored exactly once after the replay."""
    first = clock_start_ns + int((CUT_FIRST_STEP + 2) * INTERVAL_S * NS)
    last = clock_start_ns + int((CUT_END_STEP - 2) * INTERVAL_S * NS)
    offline = [r for r in truth if r.site == site and first <= r.ts_ns <= last]
    per_device = 10 * 60 / INTERVAL_S
    devices = {r.device for r in offline}
    at: dict[tuple[str, str, int], list[int]] = {}
    for p in stored.seqs if stored is not None else ():
        at.setdefault((p.site, p.device, p.seq), []).append(p.ts_ns)
    once = sum(1 for r in offline if at.get((r.site, r.device, r.seq)) == [r.ts_ns])
    return [
        Check(
            "cut-site devices with > 10 min offline",
            DEVICES_PER_SITE,
            sum(1 for d in devices if sum(r.device == d for r in offline) > per_device),
        ),
        Check("cut-site offline readings, stored once", len(offline), once),
    ]


@pytest.fixture
def spool_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "spools"
    path.mkdir()
    yield path


def test_chaos_every_count_equal(
    broker: MosquittoProcess,
    fresh_influxdb: InfluxFixture,
    make_settings: SettingsFactory,
    spool_dir: Path,
) -> None:
    started = time.monotonic()
    fx = fresh_influxdb
    settings = make_settings(broker, fx)
    rollup_settings = make_settings(
        None,
        fx,
        rollup_interval_seconds=2.0,
        # The frontier starts before the first reading: every minute is aggregated by it, and
        # again through the dirty-hour markers as the late readings arrive.
        rollup_first_catch_up_seconds=3 * 3600.0,
    )
    device_span_ns = int(REAL_SECONDS * SPEED * NS)
    # The device clock runs across the top of an hour (so closed hours are checked) that is
    # 1 to 2 h ago: every reading comes late, and a clock skewed 10 min ahead is still past.
    an_hour_ago = time.time_ns() // HOUR_NS * HOUR_NS - HOUR_NS
    clock_start_ns = an_hour_ago - device_span_ns // 2
    clock = DeviceClock(SPEED, clock_start_ns)
    truth: list[SentReading] = []
    truth_lock = threading.Lock()
    config = SimConfig(
        sites=SITES,
        devices_per_site=DEVICES_PER_SITE,
        interval_s=INTERVAL_S,
        seed=7,
        fault_rate_per_hour=6.0,
        demo_script=True,
        duration_s=REAL_SECONDS * SPEED,
        connections="per-device",
    )
    probe = FleetSimulator(
        config=config, transport_factory=paho_factory(settings), spool_dir=spool_dir
    )
    cut_site = list(dict.fromkeys(s.site for s in probe.specs))[1]
    scripted: dict[tuple[str, str], list[Fault]] = {
        (s.site, s.device): [Fault(FaultKind.NETWORK_OUTAGE, CUT_FIRST_STEP, CUT_END_STEP)]
        for s in probe.specs
        if s.site == cut_site
    }
    # Every fault, whatever the seed draws: a camera lost on a box outside the cut site.
    box = next(s for s in probe.specs if s.site != cut_site and s.kind == DeviceKind.INFERENCE_BOX)
    scripted[(box.site, box.device)] = [Fault(FaultKind.CAMERA_LOSS, *CAMERA_LOSS_STEPS)]
    sim = FleetSimulator(
        config=config,
        transport_factory=paho_factory(settings, max_in_flight=100),
        spool_dir=spool_dir,
        topic_root=settings.mqtt_topic_root,
        clock_ns=clock.clock_ns,
        monotonic=clock.monotonic,
        faults=scripted,
        spool_factory=lambda path: RecordingSpool(path, truth, truth_lock),
    )
    runner = threading.Thread(target=sim.run, name="simulator", daemon=True)
    with ThreadedRollup(rollup_settings), IngestProcess(settings) as ingest:
        runner.start()
        try:
            at = time.monotonic()

            def until(offset_s: float) -> None:
                time.sleep(max(0.0, at + offset_s - time.monotonic()))

            until(20)
            ingest.kill()  # -9: no flush, no acknowledgement
            ingest.start()
            ingest.wait_subscribed()
            until(40)
            fx.process.stop()
            time.sleep(20)
            fx.process.start()
            until(75)
            ingest.kill()
            time.sleep(2)
            ingest.start()
            ingest.wait_subscribed()
            until(100)
            broker.restart()
        finally:
            runner.join(timeout=REAL_SECONDS + 120)
            sim.stop()
            runner.join(timeout=60)
        assert not runner.is_alive(), "the simulator did not stop"
        drain_spools(sim, settings, spool_dir)
        ground = GroundTruth(
            sent=tuple(truth),
            open_alerts=device_open_alerts(sim, spool_dir),
            dead_letters=code_counts(EXPECTED_CODE[p] for p in sim.stats.malformed_payloads),
        )
        checks: list[Check] = []
        last_stored: list[Stored] = []

        def settled() -> bool:
            last_stored[:] = [stored_state(fx, settings)]
            checks[:] = reconcile(ground, last_stored[0])
            return all(c.equal for c in checks)

        # Late data reaches the rollups within 3 minutes of being stored (the promise); the
        # journal drains first.
        with contextlib.suppress(AssertionError):
            wait_until(settled, 300, "every count of the chaos table to be equal", poll=5)
        assert ingest.is_running, "the ingest died"
        chaos_happened = [
            Check("fault kinds the simulator ran", len(FaultKind), len(sim.stats.faults)),
            # Each start subscribes (and again after the broker restart).
            Check(
                "ingest subscribed after start and 2 kill -9",
                3,
                min(3, ingest.log_text().count("mqtt subscribed to")),
            ),
            *offline_checks(
                truth, last_stored[0] if last_stored else None, cut_site, clock_start_ns
            ),
        ]
        checks += chaos_happened
    print(f"\nchaos: {sim.stats}")
    print(f"chaos: {len(truth)} readings, wall time {time.monotonic() - started:.0f} s")
    print(format_table(checks))
    assert all(c.equal for c in checks), format_table(checks)
