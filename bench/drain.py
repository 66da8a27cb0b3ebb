"""bench room: drain mode, the consumers measured with the publisher out of the loop.

Each consumer first connects once (a warm-up reading stored shows its persistent session and
subscription exist), then stops. The workload is published while it is stopped, so the broker
queues every message in the consumer's session; the publisher's own rate is kept as the
generator's ceiling. Then the consumer starts again and the clock runs from its start until a
Flux count shows every reading stored; the stored counts per field are checked at the end.
The same for the ingest (1 process, 2 on a shared subscription), Telegraf (QoS 1, persistent
session, ack after write), the broker alone (`mosquitto_sub` with a persistent session) and
the database (the ingest's lines written straight to `/api/v2/write`).

Two workloads: single readings of 10 metrics, and the same readings in batches of 50
(`{"batch": [...]}`; Telegraf parses the array with json_v2). Units: readings/s and fields/s
(10 metric fields a reading). Touches: the bench's broker and InfluxDB, consumer children.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import BenchEnv, Progress
from bench.procstat import RunCpu
from bench.runner import (
    PublisherProcess,
    RunFailedError,
    publish_one,
    stored_outcome,
    wait_for_count,
    warm_up,
)
from bench.scenarios import telegraf_processes
from bench.telegraf import METRIC_BATCH_SIZE
from bench.workload import (
    END_BEFORE_NOW_SECONDS,
    METRIC_NAMES,
    WARMUP_SITE,
    Message,
    device_name,
    generate,
    reading,
    telemetry_topic,
    warmup_message,
    write_messages,
)
from edgewatch.encode import batch_payload, encode_text
from stack.processes import ManagedProcess

BATCH_SIZE = 50
FIELDS_PER_READING = len(METRIC_NAMES)
PUBLISH_TIMEOUT_SECONDS = 1800.0
SUB_TIMEOUT_SECONDS = 600.0

Factory = Callable[[BenchEnv, str], list[ManagedProcess]]


@dataclass(frozen=True, slots=True)
class DrainWorkload:
    name: str  # "single" or "batch"
    payloads: Path
    readings: int
    messages: int


def generate_batches(
    *, root: str, readings: int, devices: int, now: int, batch: int = BATCH_SIZE, seed: int = 7
) -> Iterator[Message]:
    """`readings` readings as batches of `batch` per device, devices interleaved.

    Pure: the same readings (values, times one second apart per device) as `generate` would
    give for the same per-device count, grouped into `{"batch": [...]}` payloads.
    """
    rng = random.Random(seed)
    per_device = -(-readings // devices)
    first_ts = now - END_BEFORE_NOW_SECONDS - per_device
    emitted = 0
    for chunk_start in range(0, per_device, batch):
        for device_index in range(devices):
            site, device = device_name(device_index)
            texts = []
            for step in range(chunk_start, min(chunk_start + batch, per_device)):
                if emitted >= readings:
                    break
                texts.append(encode_text(reading(rng, first_ts + step, step)))
                emitted += 1
            if texts:
                yield Message(telemetry_topic(root, site, device), batch_payload(texts))


def warmup_batch(root: str, ts: float) -> Message:
    """The warm-up reading as a batch of one: a batch-only consumer (Telegraf) parses it."""
    single = warmup_message(root, ts)
    return Message(single.topic, batch_payload([single.payload.decode()]))


def _publish(env: BenchEnv, payloads: Path, client_id: str) -> dict[str, float]:
    pub = PublisherProcess(env=env, args=["--file", str(payloads)], client_id=client_id)
    try:
        result = pub.result(timeout=PUBLISH_TIMEOUT_SECONDS)
    finally:
        pub.kill()
    seconds = result.all_acked - result.first_publish
    return {
        "publish_seconds": seconds,
        "publisher_messages_per_s": result.published / seconds,
    }


def _rates(readings: int, seconds: float) -> dict[str, float]:
    return {
        "seconds": seconds,
        "readings_per_s": readings / seconds,
        "fields_per_s": readings * FIELDS_PER_READING / seconds,
    }


def _start_together(procs: list[ManagedProcess]) -> None:
    """Start every process at once: replicas must not start a readiness wait apart."""
    errors: list[BaseException] = []

    def start(proc: ManagedProcess) -> None:
        try:
            proc.start()
        except (RuntimeError, OSError) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(p,)) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RunFailedError(f"a consumer did not start: {errors[0]}")


def drain_consumer(
    env: BenchEnv,
    *,
    name: str,
    factory: Factory,
    workload: DrainWorkload,
    root: str,
    progress: Progress,
) -> dict[str, Any]:
    """Queue the workload in the stopped consumer's session, then time its drain."""
    label = f"drain {name} {workload.name}"
    bucket = env.create_bucket(f"drain_{name}_{workload.name}")
    procs = factory(env, bucket)
    for proc in procs:
        proc.start()
    try:
        warm_up(
            env,
            bucket=bucket,
            root=root,
            progress=progress,
            message=warmup_batch(root, time.time()) if workload.name == "batch" else None,
        )
    finally:
        for proc in procs:
            proc.stop()
    progress(f"{label}: consumer stopped; queuing {workload.messages:,} messages")
    published = _publish(env, workload.payloads, f"edgewatch-bench-drain-{name}")
    progress(f"{label}: queued at {published['publisher_messages_per_s']:,.0f} msg/s; starting")
    started = time.time()
    try:
        _start_together(procs)
        cpu = RunCpu.begin([p.pid for p in procs], env.influxd.pid)
        wait = wait_for_count(
            env, bucket=bucket, expected=workload.readings, progress=progress, label=label
        )
        cpu.end()
    finally:
        for proc in procs:
            proc.stop()
    seconds = (wait.done_at or time.time()) - started
    result: dict[str, Any] = {
        **stored_outcome(env, bucket=bucket, expected=workload.readings, wait=wait),
        "processes": len(procs),
        "readings": workload.readings,
        "messages": workload.messages,
        **_rates(workload.readings, seconds),
        **published,
        **cpu.fields(count=workload.readings, unit="reading"),
    }
    state = "ok" if result["ok"] else f"FAILED: {result['error']}"
    progress(f"{label}: {result['readings_per_s']:,.0f} readings/s in {seconds:.1f} s ({state})")
    return result


def drain_broker(
    env: BenchEnv, *, workload: DrainWorkload, root: str, progress: Progress
) -> dict[str, Any]:
    """The broker's own drain: a persistent `mosquitto_sub` session, no database."""
    binary = shutil.which("mosquitto_sub")
    if binary is None:
        raise RunFailedError("mosquitto_sub is missing (apt-get install mosquitto-clients)")
    client_id = f"edgewatch-bench-drain-sub-{workload.name}"
    argv = [
        binary, "-h", env.mosquitto.host, "-p", str(env.mosquitto.port),
        "-q", "1", "-c", "-i", client_id, "-t", f"{root}/+/+/telemetry", "-F", "%t",
    ]  # fmt: skip
    warm_marker = f"/{WARMUP_SITE}/".encode()

    def run_sub(expected: int | None) -> tuple[int, float | None, float]:
        sub = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        started = time.time()
        got = 0
        done: list[float] = []
        warmed = threading.Event()

        def read() -> None:
            nonlocal got
            assert sub.stdout is not None
            for line in sub.stdout:
                if warm_marker in line:
                    warmed.set()
                    continue
                got += 1
                if expected is not None and got >= expected:
                    done.append(time.time())
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            if expected is None:
                for _ in range(50):
                    warm = warmup_message(root, time.time())
                    publish_one(env, warm.topic, warm.payload)
                    if warmed.wait(0.2):
                        break
                else:
                    raise RunFailedError("mosquitto_sub did not receive the warm-up message")
            else:
                reader.join(timeout=SUB_TIMEOUT_SECONDS)
        finally:
            sub.terminate()
            sub.wait()
        return got, (done[0] if done else None), started

    run_sub(None)
    progress(f"drain broker {workload.name}: queuing {workload.messages:,} messages")
    published = _publish(env, workload.payloads, f"edgewatch-bench-drain-pub-{workload.name}")
    got, done_at, started = run_sub(workload.messages)
    ok = got >= workload.messages and done_at is not None
    seconds = (done_at or time.time()) - started
    result: dict[str, Any] = {
        "ok": ok,
        "error": None if ok else f"subscriber got {got:,} of {workload.messages:,} messages",
        "messages": workload.messages,
        "readings": workload.readings,
        "received": got,
        "count_verified": ok,
        **_rates(workload.readings, seconds),
        "messages_per_s": workload.messages / seconds,
        **published,
    }
    progress(f"drain broker {workload.name}: {result['messages_per_s']:,.0f} msg/s")
    return result


def telegraf_factory(binary: Path, root: str, *, batch: bool) -> Factory:
    def make(env: BenchEnv, bucket: str) -> list[ManagedProcess]:
        return telegraf_processes(
            env,
            bucket=bucket,
            root=root,
            binary=binary,
            client_id=f"edgewatch-bench-telegraf-{'batch' if batch else 'single'}",
            batch=batch,
            max_undelivered_messages=METRIC_BATCH_SIZE // BATCH_SIZE if batch else None,
            data_dir=env.root / f"telegraf-{bucket}",
        )

    return make


def write_workloads(
    directory: Path, *, root: str, readings: int, devices: int, now: int
) -> tuple[DrainWorkload, DrainWorkload]:
    """The single-reading and the batch-of-50 payload files, the same readings in both."""
    single = directory / "drain-single.tsv"
    batch = directory / "drain-batch.tsv"
    n_single = write_messages(single, generate(root=root, count=readings, devices=devices, now=now))
    n_batch = write_messages(
        batch, generate_batches(root=root, readings=readings, devices=devices, now=now)
    )
    return (
        DrainWorkload("single", single, readings, n_single),
        DrainWorkload("batch", batch, readings, n_batch),
    )


def database_ceiling_fields(result: dict[str, Any]) -> dict[str, Any]:
    """The database ceiling in the drain's units (the ingest's lines for each reading)."""
    if not result.get("ok"):
        return result
    return {**result, **_rates(int(result["messages"]), float(result["seconds"]))}
