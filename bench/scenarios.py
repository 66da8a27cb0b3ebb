"""bench room: one consumer set-up (the ingest, two ingest replicas, Telegraf) under load.

A scenario starts its consumers as child processes against a fresh bucket, warms them up,
then runs two phases: throughput (the whole pre-generated workload as fast as the publisher
goes, timed until all of it is stored) and latency (a fixed rate, readings stamped with their
publish time). Both phases check the stored counts; a phase that lost anything fails.
Touches: the bench's broker and InfluxDB, the consumer processes, files in the bench dir.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.harness import BenchEnv, Progress
from bench.procstat import ProcSample, RunCpu
from bench.publisher import PROBES_PER_SECOND
from bench.runner import (
    PROBE_TIMEOUT_SECONDS,
    LatencyPoller,
    PublisherProcess,
    RunFailedError,
    field_counts,
    percentile,
    stored_outcome,
    utc_now,
    verify_counts,
    wait_for_count,
    warm_up,
)
from bench.telegraf import TelegrafConfig, TelegrafProcess
from edgewatch.settings import settings_env, without_settings
from stack.processes import ManagedProcess

MB = 1024 * 1024
INGEST_READY_SECONDS = 1.0
PUBLISH_TIMEOUT_SECONDS = 1800.0


@dataclass(frozen=True, slots=True)
class LoadPlan:
    payloads: Path
    messages: int
    devices: int
    root: str
    latency_rate: float
    latency_seconds: float


class IngestProcess(ManagedProcess):
    """`python -m ingest` configured by environment variables, as an operator would run it."""

    name = "ingest"
    env_var = "MQTT_PORT"

    def __init__(self, *, data_dir: Path, environment: dict[str, str], instance: str) -> None:
        super().__init__(
            port=0,
            data_dir=data_dir,
            binary=Path(sys.executable),
            log_path=data_dir / f"{instance}.log",
        )
        self._env = environment
        self._started_at = 0.0

    def command(self) -> list[str]:
        self._started_at = time.monotonic()
        return [str(self.binary), "-m", "ingest", "--log-level", "WARNING"]

    def environment(self) -> dict[str, str]:
        return self._env

    def is_ready(self) -> bool:
        # Ready for real once the warm-up reading is stored; this only waits out the imports.
        return time.monotonic() - self._started_at >= INGEST_READY_SECONDS


def ingest_processes(
    env: BenchEnv, *, bucket: str, root: str, replicas: int
) -> list[ManagedProcess]:
    base = without_settings(os.environ)
    base.update(
        settings_env(
            mqtt_host=env.mosquitto.host,
            mqtt_port=env.mosquitto.port,
            mqtt_topic_root=root,
            influxdb_url=env.url,
            influxdb_org=env.org,
            influxdb_token=env.token,
            influxdb_bucket=bucket,
            # Each instance journals under the bench's own temp dir, never the user's state dir.
            ingest_journal_dir=env.root / "ingest-journal",
        )
    )
    procs: list[ManagedProcess] = []
    for index in range(1, replicas + 1):
        instance = f"bench-ingest-{index}"
        environment = base | settings_env(mqtt_client_id=instance, ingest_instance=instance)
        if replicas > 1:
            environment |= settings_env(mqtt_share_group="edgewatch-bench")
        procs.append(
            IngestProcess(data_dir=env.root / "ingest", environment=environment, instance=instance)
        )
    return procs


def telegraf_processes(
    env: BenchEnv,
    *,
    bucket: str,
    root: str,
    binary: Path,
    client_id: str = "edgewatch-bench-telegraf",
    batch: bool = False,
    max_undelivered_messages: int | None = None,
    data_dir: Path | None = None,
) -> list[ManagedProcess]:
    """Telegraf on the bench's broker and InfluxDB, writing to `bucket` (bench/telegraf.py)."""
    config = TelegrafConfig(
        mqtt_host=env.mosquitto.host,
        mqtt_port=env.mosquitto.port,
        topic_root=root,
        influxdb_url=env.url,
        token=env.token,
        org=env.org,
        bucket=bucket,
        client_id=client_id,
        batch=batch,
        max_undelivered_messages=max_undelivered_messages,
    )
    directory = data_dir or env.root / "telegraf"
    return [TelegrafProcess(config=config, data_dir=directory, binary=binary)]


ServiceFactory = Callable[[BenchEnv, str], list[ManagedProcess]]


def _samples(procs: list[ManagedProcess]) -> list[ProcSample | None]:
    return [ProcSample.read(p.pid) if p.pid is not None else None for p in procs]


def throughput_phase(
    env: BenchEnv,
    *,
    name: str,
    bucket: str,
    plan: LoadPlan,
    procs: list[ManagedProcess],
    progress: Progress,
) -> dict[str, Any]:
    cpu = RunCpu.begin([p.pid for p in procs], env.influxd.pid)
    progress(f"{name}: throughput, publishing {plan.messages:,} messages")
    pub = PublisherProcess(
        env=env, args=["--file", str(plan.payloads)], client_id=f"edgewatch-bench-pub-{name}"
    )
    try:
        wait = wait_for_count(
            env,
            bucket=bucket,
            expected=plan.messages,
            progress=progress,
            label=f"{name} throughput",
            publisher=pub,
        )
        published = pub.result(timeout=PUBLISH_TIMEOUT_SECONDS)
    finally:
        pub.kill()
    cpu.end()
    done_at = wait.done_at if wait.done_at is not None else time.time()
    seconds = done_at - published.first_publish
    result: dict[str, Any] = {
        **stored_outcome(env, bucket=bucket, expected=plan.messages, wait=wait),
        "messages": plan.messages,
        "seconds": seconds,
        "messages_per_s": plan.messages / seconds,
        "publish_seconds": published.all_acked - published.first_publish,
        **cpu.fields(count=plan.messages, unit="message"),
    }
    state = "ok" if result["ok"] else f"FAILED: {result['error']}"
    progress(f"{name}: {result['messages_per_s']:,.0f} msg/s in {seconds:.1f} s ({state})")
    return result


def latency_phase(
    env: BenchEnv,
    *,
    name: str,
    bucket: str,
    plan: LoadPlan,
    progress: Progress,
) -> dict[str, Any]:
    start = utc_now() - timedelta(seconds=1)
    start_flux = start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    poller = LatencyPoller(env=env, bucket=bucket, start=start)
    poller.start_polling()
    expected = int(plan.latency_rate * plan.latency_seconds)
    progress(
        f"{name}: latency, {plan.latency_rate:,.0f} msg/s for {plan.latency_seconds:.0f} s "
        f"({PROBES_PER_SECOND} probes/s)"
    )
    pub = PublisherProcess(
        env=env,
        args=[
            "--rate", str(plan.latency_rate), "--seconds", str(plan.latency_seconds),
            "--root", plan.root, "--devices", str(plan.devices),
        ],
        client_id=f"edgewatch-bench-pub-{name}-rate",
    )  # fmt: skip
    try:
        published = pub.result(timeout=plan.latency_seconds + PUBLISH_TIMEOUT_SECONDS)
        poller.wait_for(published.probes, PROBE_TIMEOUT_SECONDS)
    finally:
        pub.kill()
        poller.stop()
    wait = wait_for_count(
        env,
        bucket=bucket,
        expected=expected,
        progress=progress,
        label=f"{name} latency",
        start=start_flux,
    )
    problems = verify_counts(field_counts(env, bucket=bucket, start=start_flux), expected)
    if len(poller.seen) < published.probes:
        problems.append(f"{len(poller.seen)} of {published.probes} probes seen")
    latencies_ms = [v * 1000.0 for v in poller.seen.values()]
    result: dict[str, Any] = {
        "ok": not problems and bool(latencies_ms),
        "error": "; ".join(problems) or None,
        "rate_per_s": plan.latency_rate,
        "seconds": plan.latency_seconds,
        "messages": expected,
        "stored": wait.stored,
        "count_verified": not problems,
        "achieved_rate_per_s": published.published
        / max(1e-9, published.last_publish - published.first_publish),
        "probes": published.probes,
        "samples": len(latencies_ms),
        "poll_interval_ms": 50,
        "polls": poller.queries,
        "p50_ms": percentile(latencies_ms, 50) if latencies_ms else None,
        "p99_ms": percentile(latencies_ms, 99) if latencies_ms else None,
        "max_ms": max(latencies_ms) if latencies_ms else None,
    }
    if result["p50_ms"] is not None:
        progress(
            f"{name}: latency p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms "
            f"({len(latencies_ms)} probes)"
        )
    return result


def run_scenario(
    env: BenchEnv,
    *,
    name: str,
    description: str,
    factory: ServiceFactory,
    plan: LoadPlan,
    progress: Progress,
) -> dict[str, Any]:
    """Start the consumers, run both phases, stop them; a failure is reported, not raised."""
    bucket = env.create_bucket(f"bench_{name}")
    procs = factory(env, bucket)
    result: dict[str, Any] = {"name": name, "description": description, "bucket": bucket}
    try:
        for proc in procs:
            proc.start()
        progress(f"{name}: {len(procs)} process(es) started; warming up")
        warm_up(env, bucket=bucket, root=plan.root, progress=progress)
        result["throughput"] = throughput_phase(
            env, name=name, bucket=bucket, plan=plan, procs=procs, progress=progress
        )
        result["latency"] = latency_phase(
            env, name=name, bucket=bucket, plan=plan, progress=progress
        )
        after = _samples(procs)
        rss = [s.peak_rss_bytes for s in after if s is not None]
        result["processes"] = len(procs)
        result["peak_rss_mb"] = max(rss) / MB if rss else None
        result["peak_rss_mb_each"] = [r / MB for r in rss]
        for proc in procs:
            if not proc.is_running():
                raise RunFailedError(f"{proc.name} exited during the run; log:\n{proc.log_tail()}")
        result["ok"] = bool(result["throughput"]["ok"] and result["latency"]["ok"])
        result["error"] = result["throughput"]["error"] or result["latency"]["error"]
    except RunFailedError as exc:
        result["ok"] = False
        result["error"] = str(exc)
        progress(f"{name}: FAILED: {exc}")
    finally:
        for proc in procs:
            proc.stop()
    return result
