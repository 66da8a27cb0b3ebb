"""bench room: the chaos scenario, shared by the chaos test and `python -m bench.chaos`.

A simulated fleet with every fault (and one site cut off for more than 10 minutes of its own
time) runs on an accelerated device clock set 1 to 2 h in the past, across the top of an
hour, through real Mosquitto, the ingest as a child process with its journal, influxd and
the rollup service, while `ChaosControls` kill the ingest -9 twice, stop influxd for 20 s and
restart the broker. Afterwards devices left crashed or cut off drain their spools, and the
pure reconciler (bench/reconcile.py) compares the store with the simulator's ground truth.

`python -m bench.chaos` runs it longer with a bigger fleet on throw-away processes
(stack/ephemeral.py) and prints the table; exit 1 if any count differs. Touches: child
processes, temp dirs, loopback ports.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from influxdb_client.client.influxdb_client import InfluxDBClient

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
from edge.agent import EdgeAgent
from edge.devices import DeviceKind, Fault, FaultKind
from edge.simulator import FleetSimulator, SimConfig
from edge.spool import Spool, SpoolItem
from edge.transport import paho_factory
from edgewatch.alerts import StoredAlertEvent, fold_alerts
from edgewatch.models import DeviceInfo
from edgewatch.settings import Settings
from rollup.plan import LEVEL_1H, LEVEL_1M
from rollup.service import RollupService, RollupStore, make_client
from stack.ephemeral import cached_influxd, running_broker, running_influxdb, settings_for

NS = 1_000_000_000
HOUR_NS = 3600 * NS
REPO_ROOT = Path(__file__).resolve().parents[1]
SETTLE_TIMEOUT_SECONDS = 300.0
INFLUXD_DOWN_SECONDS = 20.0
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


@dataclass(frozen=True, slots=True)
class Scenario:
    sites: int = 3
    devices_per_site: int = 4
    real_seconds: float = 150.0
    speed: float = 8.0  # device seconds per real second
    interval_s: float = 5.0  # device seconds between readings
    seed: int = 7
    fault_rate_per_hour: float = 6.0

    @property
    def steps(self) -> int:
        return int(self.real_seconds * self.speed / self.interval_s)

    @property
    def cut_steps(self) -> tuple[int, int]:
        """The cut site's outage, in readings: a quarter in, until five sixths."""
        return self.steps // 4, self.steps * 5 // 6

    @property
    def camera_loss_steps(self) -> tuple[int, int]:
        return self.steps * 5 // 12, self.steps * 13 // 24

    def at(self, share: float) -> float:
        """Real seconds into the run at `share` of it."""
        return self.real_seconds * share


@dataclass(frozen=True, slots=True)
class ChaosControls:
    """What the scenario does to the path around the fleet (each call returns when done)."""

    kill_ingest: Callable[[], None]  # SIGKILL
    start_ingest: Callable[[], None]  # start and wait until subscribed
    stop_influxd: Callable[[], None]
    start_influxd: Callable[[], None]
    restart_broker: Callable[[], None]


class DeviceClock:
    """An accelerated clock: `speed` device seconds per real second, from `start_ns`."""

    def __init__(self, speed: float, start_ns: int) -> None:
        self._speed = speed
        self.start_ns = start_ns
        self._m0 = time.monotonic()

    def monotonic(self) -> float:
        return self._m0 + (time.monotonic() - self._m0) * self._speed

    def clock_ns(self) -> int:
        return self.start_ns + int((time.monotonic() - self._m0) * self._speed * NS)


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


@dataclass
class FleetRun:
    sim: FleetSimulator
    truth: list[SentReading]
    cut_site: str
    clock_start_ns: int
    spool_dir: Path


def run_fleet(
    scenario: Scenario, settings: Settings, controls: ChaosControls, spool_dir: Path
) -> FleetRun:
    """The simulated fleet with every fault while the controls break the path; then the
    spools of devices left crashed or cut off are drained."""
    span_ns = int(scenario.real_seconds * scenario.speed * NS)
    # Across the top of an hour 1 to 2 h ago: every reading comes late, the hours before and
    # after it are closed by the end, and a clock skewed 10 min ahead is still in the past.
    an_hour_ago = time.time_ns() // HOUR_NS * HOUR_NS - HOUR_NS
    clock = DeviceClock(scenario.speed, an_hour_ago - span_ns // 2)
    truth: list[SentReading] = []
    lock = threading.Lock()
    config = SimConfig(
        sites=scenario.sites,
        devices_per_site=scenario.devices_per_site,
        interval_s=scenario.interval_s,
        seed=scenario.seed,
        fault_rate_per_hour=scenario.fault_rate_per_hour,
        demo_script=True,
        duration_s=scenario.real_seconds * scenario.speed,
        connections="per-device",
    )
    factory = paho_factory(settings, max_in_flight=100)
    probe = FleetSimulator(config=config, transport_factory=factory, spool_dir=spool_dir)
    cut_site = list(dict.fromkeys(s.site for s in probe.specs))[1 % scenario.sites]
    scripted: dict[tuple[str, str], list[Fault]] = {
        (s.site, s.device): [Fault(FaultKind.NETWORK_OUTAGE, *scenario.cut_steps)]
        for s in probe.specs
        if s.site == cut_site
    }
    # Every fault, whatever the seed draws: a camera lost on a box outside the cut site.
    box = next(
        (s for s in probe.specs if s.site != cut_site and s.kind == DeviceKind.INFERENCE_BOX),
        None,
    )
    if box is not None:
        scripted[(box.site, box.device)] = [
            Fault(FaultKind.CAMERA_LOSS, *scenario.camera_loss_steps)
        ]
    sim = FleetSimulator(
        config=config,
        transport_factory=factory,
        spool_dir=spool_dir,
        topic_root=settings.mqtt_topic_root,
        clock_ns=clock.clock_ns,
        monotonic=clock.monotonic,
        faults=scripted,
        spool_factory=lambda path: RecordingSpool(path, truth, lock),
    )
    runner = threading.Thread(target=sim.run, name="simulator", daemon=True)
    runner.start()
    try:
        _break_the_path(scenario, controls)
    finally:
        runner.join(timeout=scenario.real_seconds + 120)
        sim.stop()
        runner.join(timeout=60)
    if runner.is_alive():
        raise RuntimeError("the simulator did not stop")
    _drain_spools(sim, settings, spool_dir, scenario.interval_s)
    return FleetRun(sim, truth, cut_site, clock.start_ns, spool_dir)


def _break_the_path(scenario: Scenario, controls: ChaosControls) -> None:
    at = time.monotonic()

    def until(share: float) -> None:
        time.sleep(max(0.0, at + scenario.at(share) - time.monotonic()))

    until(0.13)
    controls.kill_ingest()
    controls.start_ingest()
    until(0.27)
    controls.stop_influxd()
    time.sleep(INFLUXD_DOWN_SECONDS)
    controls.start_influxd()
    until(0.5)
    controls.kill_ingest()
    time.sleep(2)
    controls.start_ingest()
    until(0.67)
    controls.restart_broker()


def _drain_spools(
    sim: FleetSimulator, settings: Settings, spool_dir: Path, interval_s: float
) -> None:
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
                info=DeviceInfo(interval_s=interval_s),
            )
            agent.start()
            deadline = time.monotonic() + 60
            while agent.spool_depth > 0 and time.monotonic() < deadline:
                agent.pump(timeout_s=0.2)
            agent.stop(timeout_s=5.0)
        finally:
            spool.close()


def ground_truth(run: FleetRun) -> GroundTruth:
    """What the fleet sent; the alerts its own rules hold raised (persisted in each spool)."""
    raised = set()
    for spec in run.sim.specs:
        with Spool(run.spool_dir / f"{spec.site}.{spec.device}.sqlite") as spool:
            raised |= {(spec.site, spec.device, kind) for kind in spool.raised_alerts()}
    return GroundTruth(
        sent=tuple(run.truth),
        open_alerts=frozenset(raised),
        dead_letters=code_counts(EXPECTED_CODE[p] for p in run.sim.stats.malformed_payloads),
    )


def run_checks(run: FleetRun, scenario: Scenario, ingest_subscriptions: int) -> list[Check]:
    """That the chaos happened: every fault kind, every ingest start, the site cut off."""
    first, end = scenario.cut_steps
    lo = run.clock_start_ns + int((first + 2) * scenario.interval_s * NS)
    hi = run.clock_start_ns + int((end - 2) * scenario.interval_s * NS)
    offline = [r for r in run.truth if r.site == run.cut_site and lo <= r.ts_ns <= hi]
    ten_minutes = 10 * 60 / scenario.interval_s
    devices = {r.device for r in offline}
    return [
        Check("fault kinds the simulator ran", len(FaultKind), len(run.sim.stats.faults)),
        # Each start subscribes (and again after the broker restart).
        Check("ingest subscribed after start and 2 kill -9", 3, min(3, ingest_subscriptions)),
        Check(
            "cut-site devices with > 10 min offline",
            scenario.devices_per_site,
            sum(1 for d in devices if sum(r.device == d for r in offline) > ten_minutes),
        ),
    ]


def offline_stored(run: FleetRun, scenario: Scenario, stored: Stored) -> Check:
    first, end = scenario.cut_steps
    lo = run.clock_start_ns + int((first + 2) * scenario.interval_s * NS)
    hi = run.clock_start_ns + int((end - 2) * scenario.interval_s * NS)
    offline = [r for r in run.truth if r.site == run.cut_site and lo <= r.ts_ns <= hi]
    at: dict[tuple[str, str, int], list[int]] = {}
    for p in stored.seqs:
        at.setdefault((p.site, p.device, p.seq), []).append(p.ts_ns)
    once = sum(1 for r in offline if at.get((r.site, r.device, r.seq)) == [r.ts_ns])
    return Check("cut-site offline readings, stored once", len(offline), once)


# ------------------------------------------------------------------------- the store

WITH_NS = "|> map(fn: (r) => ({r with ns: int(v: r._time)}))"


def _rows(client: InfluxDBClient, org: str, flux: str, **params: object) -> list[dict[str, Any]]:
    tables = client.query_api().query(flux, org=org, params=params)
    return [dict(r.values) for t in tables for r in t.records]


def _of(measurement: str) -> str:
    return (
        "from(bucket: b) |> range(start: 0) |> filter(fn: (r) => r._measurement == "
        f'"{measurement}")'
    )


def stored_state(client: InfluxDBClient, settings: Settings, open_alerts: frozenset[Any]) -> Stored:
    """What the store holds; `open_alerts` as (site, device, type) from the alert fold."""
    org, raw_bucket = settings.influxdb_org, settings.influxdb_bucket
    seqs = tuple(
        StoredSeq(r["site"], r["device"], int(r["ns"]), int(r["_value"]))
        for r in _rows(client, org, _of("telemetry_seq") + WITH_NS, b=raw_bucket)
    )
    raw = tuple(
        RawPoint(r["site"], r["device"], r["_field"], int(r["ns"]), float(r["_value"]))
        for r in _rows(client, org, _of("telemetry") + WITH_NS, b=raw_bucket)
    )
    progress = {
        str(r["level"]): int(r["_value"])
        for r in _rows(
            client,
            org,
            _of("rollup_progress") + ' |> filter(fn: (r) => r._field == "through_ns") |> last()',
            b=settings.influxdb_bucket_1m,
        )
    }
    dead = {
        str(r["code"]): int(r["_value"])
        for r in _rows(
            client,
            org,
            _of("dead_letter")
            + ' |> filter(fn: (r) => r._field == "topic") |> group(columns: ["code"]) |> count()',
            b=raw_bucket,
        )
    }
    return Stored(
        seqs=seqs,
        raw=raw,
        rollup_1m=_rollup(client, org, settings.influxdb_bucket_1m),
        rollup_1h=_rollup(client, org, settings.influxdb_bucket_1h),
        progress_1m_ns=progress.get(LEVEL_1M, 0),
        progress_1h_ns=progress.get(LEVEL_1H, 0),
        open_alerts=open_alerts,
        dead_letters=dead,
    )


def _rollup(client: InfluxDBClient, org: str, bucket: str) -> tuple[RollupMean, ...]:
    rows = _rows(
        client,
        org,
        _of("telemetry") + ' |> filter(fn: (r) => r.stat == "mean" or r.stat == "count")' + WITH_NS,
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


def folded_open_alerts(client: InfluxDBClient, settings: Settings) -> frozenset[Any]:
    """The core's fold (edgewatch/alerts.py) over every alert event of the state bucket."""
    rows = _rows(
        client,
        settings.influxdb_org,
        _of("alert_event")
        + ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
        + WITH_NS,
        b=settings.influxdb_bucket_state,
    )
    events = [
        StoredAlertEvent(
            site=str(r["site"]),
            device=str(r["device"]),
            type=str(r["type"]),
            ts_ns=int(r["ns"]),
            severity=str(r.get("severity") or "info"),
            state=str(r.get("state") or "raised"),
            received_ns=int(r["received_ns"]) if r.get("received_ns") is not None else None,
        )
        for r in rows
    ]
    return frozenset((a.site, a.device, a.type) for a in fold_alerts(events) if a.is_open)


def settle(
    truth: GroundTruth,
    observe: Callable[[], Stored],
    timeout_s: float = SETTLE_TIMEOUT_SECONDS,
) -> tuple[list[Check], Stored]:
    """Reconcile until every count is equal or the time is up (the journal drains, then late
    data reaches the rollups: promised within 3 minutes of being stored)."""
    deadline = time.monotonic() + timeout_s
    while True:
        stored = observe()
        checks = reconcile(truth, stored)
        if all(c.equal for c in checks) or time.monotonic() > deadline:
            return checks, stored
        time.sleep(5)


# ------------------------------------------------------------------------- the command


def _env_of(settings: Settings) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MQTT_", "INFLUXDB_V2_", "EDGEWATCH_"))
    }
    for name, info in Settings.model_fields.items():
        value = getattr(settings, name)
        if value is None or info.alias is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[info.alias] = str(value)
    return env


class _Ingest:
    """`python -m ingest` as a child process that can be killed -9."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self._env = _env_of(settings)
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "ingest", "--log-level", "INFO"],
                cwd=REPO_ROOT,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while self.subscriptions() < self.starts:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the ingest did not subscribe; see {self.log_path}")
            time.sleep(0.1)

    def subscriptions(self) -> int:
        return self.log_path.read_text(errors="replace").count("mqtt subscribed to")

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


@contextlib.contextmanager
def _rollup_thread(settings: Settings) -> Iterator[None]:
    client = make_client(settings)
    store = RollupStore(client=client, settings=settings)
    service = RollupService(store=store, settings=settings)
    thread = threading.Thread(target=service.run_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        service.stop()
        thread.join(timeout=120)
        store.close()
        client.close()  # type: ignore[no-untyped-call]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--sites", type=int, default=5)
    parser.add_argument("--devices", type=int, default=6, help="per site (<= 50 in all)")
    parser.add_argument("--seconds", type=float, default=300.0, help="real seconds of fleet")
    parser.add_argument("--speed", type=float, default=8.0, help="device seconds per second")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    scenario = Scenario(
        sites=args.sites,
        devices_per_site=args.devices,
        real_seconds=args.seconds,
        speed=args.speed,
        seed=args.seed,
    )
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="edgewatch-chaos-") as tmp,
        running_broker() as broker,
        running_influxdb(cached_influxd()) as fx,
    ):
        root = Path(tmp)
        (root / "spools").mkdir()
        settings = settings_for(broker, fx, ingest_journal_dir=root / "journal")
        rollup = settings_for(
            None, fx, rollup_interval_seconds=2.0, rollup_first_catch_up_seconds=3 * 3600.0
        )
        ingest = _Ingest(settings, root / "ingest.log")
        controls = ChaosControls(
            kill_ingest=ingest.kill,
            start_ingest=ingest.start,
            stop_influxd=fx.process.stop,
            start_influxd=fx.process.start,
            restart_broker=broker.restart,
        )
        with _rollup_thread(rollup):
            ingest.start()
            try:
                run = run_fleet(scenario, settings, controls, root / "spools")
                truth = ground_truth(run)
                with InfluxDBClient(
                    url=fx.url, token=fx.admin_token, org=fx.org, timeout=120_000
                ) as client:
                    checks, stored = settle(
                        truth,
                        lambda: stored_state(
                            client, settings, folded_open_alerts(client, settings)
                        ),
                    )
                checks += run_checks(run, scenario, ingest.subscriptions())
                checks.append(offline_stored(run, scenario, stored))
            finally:
                ingest.kill()
    print(f"{len(run.truth)} readings from {scenario.sites * scenario.devices_per_site} devices")
    print(f"faults: {dict(run.sim.stats.faults)}; wall time {time.monotonic() - started:.0f} s")
    print(format_table(checks))
    return 0 if all(c.equal for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
