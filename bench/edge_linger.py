"""bench room: what the edge agent's linger costs in latency and saves in messages, and what
gzip saves in bytes, on the simulator's traffic.

`python -m bench.edge_linger [--seconds 10] [--rate 20] [--devices 4]` starts its own
Mosquitto, influxd and one ingest, then runs one phase per set-up (linger 0 or the default,
gzip off or on): `devices` edge agents (edge/agent.py over paho, as `edgewatch agent` runs
them), each fed the simulator's device model (edge/devices.py) `rate` times a second for
`seconds`, announcing the agent's default interval of 10 s (a device whose readings come
faster than its heartbeat: events, bursts; at one reading per interval a linger only adds
latency, see `regular` below). Each phase reports:

- messages per reading (the agents' own counts);
- bytes on the wire per reading: each telemetry and alert PUBLISH as MQTT v5 encodes it
  (fixed header, topic, packet id, properties with the content type, payload) plus its
  PUBACK; births and TCP/IP framing are left out;
- record-to-stored latency, p50 and p99: a reading's `ts` is the moment the agent took it, and
  a poller asks InfluxDB for the phase's stored points every `POLL_SECONDS`; the latency is
  the arrival of the answer that first held the point minus its `ts` (an upper bound, too high
  by at most one poll and one query).

`regular` repeats linger 0 and the default with one reading per device per second and the
interval announced as 1 s, the simulator's own pattern (the linger is then capped at the
interval and batches nothing). Every phase must store every reading exactly once, or the
bench fails. Writes bench/results/edge_linger.json. Touches: its own Mosquitto and influxd, a
child process (the ingest), a temp dir.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import BenchEnv, Progress, bench_env, stderr_progress, write_result
from bench.runner import percentile, warm_up
from bench.scenarios import IngestProcess, ingest_processes
from edge.agent import EdgeAgent
from edge.devices import DeviceSpec, DeviceState, build_fleet, initial_state, next_sample
from edge.sites import fleet_sites
from edge.spool import Spool
from edge.transport import LinkConfig, Transport, TransportFactory, paho_factory
from edgewatch.models import DeviceInfo
from edgewatch.settings import DEFAULT_EDGE_LINGER_SECONDS, load_settings
from stack.influxd import ensure_influxd
from stack.processes import ManagedProcess

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results" / "edge_linger.json"
ROOT = "edgewatch"
POLL_SECONDS = 0.05
ANNOUNCED_INTERVAL_SECONDS = 10.0
DRAIN_TIMEOUT_SECONDS = 60.0
STORE_TIMEOUT_SECONDS = 60.0
LOOP_SECONDS = 0.005
SEED = 7
COUNTED_FIELD = "cpu_temp_c"  # every kind of simulated device reports it
PUBACK_BYTES = 4  # MQTT v5 PUBACK, success and no properties: header, length, packet id
PROPERTY_CONTENT_TYPE = 0x03


# ---------------------------------------------------------------------------- wire bytes


def _varint_bytes(value: int) -> int:
    """Bytes of an MQTT Variable Byte Integer."""
    size = 1
    while value >= 128:
        value //= 128
        size += 1
    return size


def publish_packet_bytes(topic: str, payload_bytes: int, content_type: str | None) -> int:
    """Size of a QoS 1 MQTT v5 PUBLISH packet (no topic alias; the content type its only
    property), as the broker receives it."""
    properties = 0 if content_type is None else 1 + 2 + len(content_type.encode("utf-8"))
    remaining = (
        2 + len(topic.encode("utf-8")) + 2 + _varint_bytes(properties) + properties + payload_bytes
    )
    return 1 + _varint_bytes(remaining) + remaining


@dataclass
class WireTally:
    """What the agents of one phase put on the wire (telemetry and alerts)."""

    messages: int = 0
    payload_bytes: int = 0
    wire_bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, topic: str, payload: bytes, content_type: str | None) -> None:
        with self._lock:
            self.messages += 1
            self.payload_bytes += len(payload)
            self.wire_bytes += publish_packet_bytes(topic, len(payload), content_type)
            self.wire_bytes += PUBACK_BYTES


class CountingTransport:
    """A `Transport` that tallies each non-retained publish (births are retained) it sends."""

    def __init__(self, inner: Transport, tally: WireTally) -> None:
        self._inner = inner
        self._tally = tally

    def start(self) -> None:
        self._inner.start()

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, content_type: str | None = None
    ) -> int | None:
        token = self._inner.publish(topic, payload, retain=retain, content_type=content_type)
        if token is not None and not retain:
            self._tally.add(topic, payload, content_type)
        return token

    def wait_published(self, token: int, timeout_s: float) -> bool:
        return self._inner.wait_published(token, timeout_s)

    def stop(self, *, timeout_s: float) -> None:
        self._inner.stop(timeout_s=timeout_s)

    def abort(self) -> None:
        self._inner.abort()


def counting(factory: TransportFactory, tally: WireTally) -> TransportFactory:
    def make(config: LinkConfig) -> Transport:
        return CountingTransport(factory(config), tally)

    return make


# ---------------------------------------------------------------------------- latency


@dataclass
class StoredPoller:
    """Background poller of one phase's stored points: (device, time) -> latency in s."""

    env: BenchEnv
    bucket: str
    site: str
    start: datetime
    seen: dict[tuple[str, int], float] = field(default_factory=dict)
    error: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        flux = (
            "from(bucket: bucket) |> range(start: start)"
            ' |> filter(fn: (r) => r._measurement == "telemetry" and r.site == site'
            " and r._field == f)"
            ' |> map(fn: (r) => ({r with ns: int(v: r._time)})) |> keep(columns: ["device", "ns"])'
        )
        params = {"bucket": self.bucket, "start": self.start, "site": self.site}
        params["f"] = COUNTED_FIELD
        while not self._stop.is_set():
            try:
                rows = self.env.query_rows(flux, params)
            except Exception as exc:  # reported with the result, never hidden
                self.error = str(exc)
                self._stop.wait(POLL_SECONDS)
                continue
            arrived_ns = time.time_ns()
            for row in rows:
                key = (str(row["device"]), int(row["ns"]))
                if key not in self.seen:
                    self.seen[key] = (arrived_ns - key[1]) / 1e9
            self._stop.wait(POLL_SECONDS)

    def start_polling(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stored-poller", daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.seen) < count and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


# ---------------------------------------------------------------------------- a phase


@dataclass(frozen=True)
class Phase:
    name: str
    linger_s: float
    gzip: bool
    rate: float  # readings per device per second
    interval_s: float  # what the devices announce


@dataclass
class _SimDevice:
    spec: DeviceSpec
    state: DeviceState
    rng: random.Random
    agent: EdgeAgent
    spool: Spool


def _devices(
    phase: Phase, count: int, settings_factory: TransportFactory, tmp: Path
) -> list[_SimDevice]:
    devices = []
    for spec in build_fleet(fleet_sites(1), count, SEED):
        rng = random.Random(f"{SEED}:{spec.device}")
        spool = Spool(tmp / f"{phase.name}.{spec.device}.sqlite")
        agent = EdgeAgent(
            site=f"bench-{phase.name}",
            device=spec.device,
            spool=spool,
            transport_factory=settings_factory,
            topic_root=ROOT,
            info=DeviceInfo(interval_s=phase.interval_s, model=spec.model),
            linger_s=phase.linger_s,
            gzip=phase.gzip,
        )
        devices.append(
            _SimDevice(spec=spec, state=initial_state(spec, rng), rng=rng, agent=agent, spool=spool)
        )
    return devices


def run_phase(
    env: BenchEnv, bucket: str, phase: Phase, *, devices: int, seconds: float, progress: Progress
) -> dict[str, Any]:
    tally = WireTally()
    settings = load_settings(
        mqtt_host=env.mosquitto.host, mqtt_port=env.mosquitto.port, mqtt_topic_root=ROOT
    )
    factory = counting(paho_factory(settings), tally)
    fleet = _devices(phase, devices, factory, env.root)
    poller = StoredPoller(env=env, bucket=bucket, site=f"bench-{phase.name}", start=_utc_now())
    recorded = 0
    try:
        for dev in fleet:
            dev.agent.start()
        deadline = time.monotonic() + 30
        while not all(d.agent.connected for d in fleet) and time.monotonic() < deadline:
            for dev in fleet:
                dev.agent.pump(0.01)
        poller.start_polling()
        progress(f"{phase.name}: {devices} agents, {phase.rate:g} readings/s each, {seconds:g} s")
        start = time.monotonic()
        period = 1.0 / phase.rate
        # Spread the devices over one period: no thundering herd.
        due = [start + period * i / len(fleet) for i in range(len(fleet))]
        while time.monotonic() - start < seconds:
            now = time.monotonic()
            for index, dev in enumerate(fleet):
                if now >= due[index]:
                    dev.state, sample = next_sample(dev.spec, dev.state, time.time_ns(), dev.rng)
                    dev.agent.record(sample.metrics)
                    recorded += 1
                    due[index] += period
                dev.agent.pump()
            time.sleep(LOOP_SECONDS)
        drain_deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        while any(d.agent.spool_depth for d in fleet) and time.monotonic() < drain_deadline:
            for dev in fleet:
                dev.agent.pump(0.01)
        poller.wait_for(recorded, STORE_TIMEOUT_SECONDS)
    finally:
        poller.stop()
        for dev in fleet:
            dev.agent.stop(timeout_s=2.0)
            dev.spool.close()
    latencies = list(poller.seen.values())
    published = sum(d.agent.stats.messages_published for d in fleet)
    acked = sum(d.agent.stats.acked for d in fleet)
    result = {
        "linger_s": phase.linger_s,
        "linger_in_force_s": fleet[0].agent.linger_seconds,
        "gzip": phase.gzip,
        "rate_per_device": phase.rate,
        "interval_s": phase.interval_s,
        "devices": devices,
        "readings": recorded,
        "acked": acked,
        "stored": len(poller.seen),
        "messages": published,
        "messages_gzipped": sum(d.agent.stats.gzipped for d in fleet),
        "messages_per_reading": round(published / recorded, 4) if recorded else None,
        "payload_bytes_per_reading": round(tally.payload_bytes / recorded, 1) if recorded else None,
        "wire_bytes_per_reading": round(tally.wire_bytes / recorded, 1) if recorded else None,
        "latency_p50_ms": round(percentile(latencies, 50) * 1000, 1) if latencies else None,
        "latency_p99_ms": round(percentile(latencies, 99) * 1000, 1) if latencies else None,
        "poll_error": poller.error,
        "ok": recorded > 0 and acked == recorded == len(poller.seen),
    }
    progress(f"{phase.name}: {json.dumps(result)}")
    return result


def _utc_now() -> datetime:
    return datetime.now(tz=UTC)


def phases(rate: float) -> list[Phase]:
    default = DEFAULT_EDGE_LINGER_SECONDS
    every = ANNOUNCED_INTERVAL_SECONDS
    return [
        Phase("linger0-plain", 0.0, gzip=False, rate=rate, interval_s=every),
        Phase("linger-plain", default, gzip=False, rate=rate, interval_s=every),
        Phase("linger0-gzip", 0.0, gzip=True, rate=rate, interval_s=every),
        Phase("linger-gzip", default, gzip=True, rate=rate, interval_s=every),
        Phase("regular-linger0", 0.0, gzip=False, rate=1.0, interval_s=1.0),
        Phase("regular-linger", default, gzip=False, rate=1.0, interval_s=1.0),
    ]


def _this_trees_ingest(proc: ManagedProcess) -> IngestProcess:
    """The ingest of the tree this bench runs from (gzip decoding is new), not whichever tree
    the virtualenv's editable install points at."""
    assert isinstance(proc, IngestProcess)
    environment = proc.environment() | {"PYTHONPATH": str(REPO_ROOT)}
    return IngestProcess(data_dir=proc.data_dir, environment=environment, instance="bench-ingest-1")


def run(*, seconds: float, rate: float, devices: int) -> dict[str, Any]:
    progress = stderr_progress
    settings = load_settings()
    influxd = ensure_influxd(settings.cache_dir, settings.influxdb_version, progress=progress)
    results: dict[str, Any] = {}
    with bench_env(influxd_binary=influxd, name="edge-linger", progress=progress) as env:
        bucket = env.create_bucket("edge_linger_raw")
        procs = [
            _this_trees_ingest(proc)
            for proc in ingest_processes(env, bucket=bucket, root=ROOT, replicas=1)
        ]
        for proc in procs:
            proc.start()
        try:
            warm_up(env, bucket=bucket, root=ROOT, progress=progress)
            for phase in phases(rate):
                results[phase.name] = run_phase(
                    env, bucket, phase, devices=devices, seconds=seconds, progress=progress
                )
        finally:
            for proc in procs:
                proc.stop()
    return {
        "when": _utc_now().isoformat(timespec="seconds"),
        "seconds_per_phase": seconds,
        "phases": results,
        "ok": all(r["ok"] for r in results.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.edge_linger", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase (default 10)")
    parser.add_argument("--rate", type=float, default=20.0, help="readings/s per device")
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(seconds=args.seconds, rate=args.rate, devices=args.devices)
    write_result(args.output, result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
