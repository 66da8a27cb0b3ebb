"""bench room: the moving parts of a measured run: the publisher process, the count poller and
the latency poller.

How a run is timed. Throughput: from the publisher's first publish to the moment a Flux count
of stored readings equals the number published (polled every `COUNT_POLL_SECONDS`, so the
figure is slightly pessimistic). Latency: every reading of the rate run carries its publish
time as `ts`; a probe device among them sends `PROBES_PER_SECOND` readings a second, and a
poller asks InfluxDB for the probe's stored points every `LATENCY_POLL_SECONDS`. A probe's
latency is the time the answer that first held it arrived minus its `ts`: an upper bound,
too high by at most one poll interval plus one query. Touches: the broker, InfluxDB, a child.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from paho.mqtt.enums import MQTTProtocolVersion

from bench.harness import BenchEnv, Progress
from bench.workload import (
    COUNT_FIELD,
    LATENCY_SITE,
    METRIC_NAMES,
    WARMUP_SITE,
    Message,
    warmup_message,
)
from shared.mqtt_client import new_mqtt_client

COUNT_POLL_SECONDS = 0.25
LATENCY_POLL_SECONDS = 0.05
PROGRESS_INTERVAL_SECONDS = 5.0
STALL_TIMEOUT_SECONDS = 60.0
WARMUP_REPUBLISH_SECONDS = 3.0
WARMUP_TIMEOUT_SECONDS = 60.0
PROBE_TIMEOUT_SECONDS = 30.0


class RunFailedError(RuntimeError):
    """A measured run did not store everything it was sent (or could not run at all)."""


@dataclass
class PublisherResult:
    published: int
    first_publish: float
    last_publish: float
    all_acked: float
    probes: int


class PublisherProcess:
    """`python -m bench.publisher ...` in its own process; its JSON result once it exits."""

    def __init__(self, *, env: BenchEnv, args: list[str], client_id: str) -> None:
        argv = [
            sys.executable,
            "-m",
            "bench.publisher",
            "--host",
            env.mosquitto.host,
            "--port",
            str(env.mosquitto.port),
            "--client-id",
            client_id,
            *args,
        ]
        self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=None, text=True)

    def running(self) -> bool:
        return self._proc.poll() is None

    def result(self, timeout: float | None = None) -> PublisherResult:
        out, _ = self._proc.communicate(timeout=timeout)
        if self._proc.returncode != 0:
            raise RunFailedError(f"publisher exited with code {self._proc.returncode}")
        data = json.loads(out.strip().splitlines()[-1])
        return PublisherResult(**data)

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def publish_one(env: BenchEnv, topic: str, payload: bytes) -> None:
    """One QoS 1 message, acknowledged by the broker before this returns."""
    client = new_mqtt_client(client_id="", protocol=MQTTProtocolVersion.MQTTv311)
    client.connect(env.mosquitto.host, env.mosquitto.port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            raise RunFailedError("the broker did not acknowledge the warm-up message")
    finally:
        client.disconnect()
        client.loop_stop()


def warm_up(
    env: BenchEnv, *, bucket: str, root: str, progress: Progress, message: Message | None = None
) -> None:
    """Publish one reading and wait until it is stored: the consumer is subscribed and writing.

    `message` replaces the default warm-up reading (e.g. the same reading as a batch).
    """
    message = message or warmup_message(root, time.time())
    deadline = time.monotonic() + WARMUP_TIMEOUT_SECONDS
    next_publish = 0.0
    while time.monotonic() < deadline:
        # Again every few seconds: a consumer not yet subscribed never sees the first one, and
        # the same reading stored twice overwrites itself.
        if time.monotonic() >= next_publish:
            publish_one(env, message.topic, message.payload)
            next_publish = time.monotonic() + WARMUP_REPUBLISH_SECONDS
        flux = (
            f'from(bucket: "{bucket}") |> range(start: -1d)'
            f' |> filter(fn: (r) => r._measurement == "telemetry" and r.site == "{WARMUP_SITE}")'
            " |> count()"
        )
        if env.query_rows(flux):
            return
        time.sleep(0.2)
    raise RunFailedError(
        f"the warm-up reading was not stored within {WARMUP_TIMEOUT_SECONDS:.0f} s"
    )


@dataclass
class CountWait:
    done_at: float | None  # wall time the count first equalled the expected number
    stored: int


def wait_for_count(
    env: BenchEnv,
    *,
    bucket: str,
    expected: int,
    progress: Progress,
    label: str,
    start: str = "0",
    publisher: PublisherProcess | None = None,
) -> CountWait:
    """Poll the stored count until it reaches `expected`, or stalls for STALL_TIMEOUT_SECONDS."""
    progress(f"{label}: waiting until {expected:,} readings are stored")
    stored = -1
    last_change = time.monotonic()
    next_report = time.monotonic() + PROGRESS_INTERVAL_SECONDS
    while True:
        now = env.count_points(
            bucket, field_name=COUNT_FIELD, exclude_site=WARMUP_SITE, start=start
        )
        arrived = time.time()
        if now != stored:
            stored, last_change = now, time.monotonic()
        if stored >= expected:
            return CountWait(done_at=arrived, stored=stored)
        if time.monotonic() >= next_report:
            progress(f"{label}: {stored:,}/{expected:,} stored")
            next_report += PROGRESS_INTERVAL_SECONDS
        publishing = publisher is not None and publisher.running()
        if not publishing and time.monotonic() - last_change > STALL_TIMEOUT_SECONDS:
            return CountWait(done_at=None, stored=stored)
        time.sleep(COUNT_POLL_SECONDS)


def field_counts(env: BenchEnv, *, bucket: str, start: str = "0") -> dict[str, int]:
    """Stored values per metric field (warm-up excluded): the final check of a run."""
    flux = (
        f'from(bucket: "{bucket}") |> range(start: {start})'
        f' |> filter(fn: (r) => r._measurement == "telemetry" and r.site != "{WARMUP_SITE}")'
        ' |> count() |> group(columns: ["_field"]) |> sum(column: "_value")'
    )
    return {str(r["_field"]): int(r["_value"]) for r in env.query_rows(flux)}


def verify_counts(counts: dict[str, int], expected: int) -> list[str]:
    """What is wrong with the stored counts, or [] when every metric has `expected` values."""
    return [
        f"{name}: {counts.get(name, 0):,} stored, {expected:,} sent"
        for name in METRIC_NAMES
        if counts.get(name, 0) != expected
    ]


def stored_outcome(
    env: BenchEnv, *, bucket: str, expected: int, wait: CountWait, start: str = "0"
) -> dict[str, Any]:
    """A run's verdict on what it stored: every metric `expected` times, without a stall."""
    problems = verify_counts(field_counts(env, bucket=bucket, start=start), expected)
    if wait.done_at is None:
        problems.insert(0, f"stalled at {wait.stored:,} of {expected:,} readings stored")
    return {
        "ok": not problems,
        "error": "; ".join(problems) or None,
        "stored": wait.stored,
        "count_verified": not problems,
    }


@dataclass
class LatencyPoller:
    """Background poller of the probe device's stored points (see the module docstring)."""

    env: BenchEnv
    bucket: str
    start: datetime
    seen: dict[int, float] = field(default_factory=dict)  # probe ts (ns) -> latency (s)
    queries: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: str | None = None

    def _flux(self) -> str:
        return (
            f'from(bucket: "{self.bucket}")'
            f" |> range(start: {self.start.strftime('%Y-%m-%dT%H:%M:%S.%fZ')})"
            f' |> filter(fn: (r) => r._measurement == "telemetry" and r.site == "{LATENCY_SITE}"'
            f' and r._field == "{COUNT_FIELD}")'
            ' |> keep(columns: ["_time"])'
        )

    def _run(self) -> None:
        flux = self._flux()
        while not self._stop.is_set():
            try:
                rows = self.env.query_rows(flux)
            except Exception as exc:  # reported with the result, never hidden
                self.error = str(exc)
                time.sleep(LATENCY_POLL_SECONDS)
                continue
            arrived = time.time()
            self.queries += 1
            for row in rows:
                stamp: datetime = row["_time"]
                key = int(stamp.timestamp() * 1_000_000)
                if key not in self.seen:
                    self.seen[key] = arrived - stamp.timestamp()
            self._stop.wait(LATENCY_POLL_SECONDS)

    def start_polling(self) -> None:
        self._thread = threading.Thread(target=self._run, name="latency-poller", daemon=True)
        self._thread.start()

    def wait_for(self, probes: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.seen) < probes and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a measured value)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * pct // 100)))
    return ordered[int(rank) - 1]


def utc_now() -> datetime:
    return datetime.now(tz=UTC)
