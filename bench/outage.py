"""bench room: an InfluxDB outage through the ingest's journal, `python -m bench.outage`.

With InfluxDB stopped, several publisher processes send `--readings` readings (one per
message, the bench workload) as fast as the broker takes them; the ingest journals and
acknowledges them, so the broker's queue stays short. Then InfluxDB starts again and the
ingest drains its journal. Prints a table: publish time, time until everything was journaled,
journal peak bytes, drain time, stored count, ingest and Mosquitto peak RSS. Every metric
field's stored count must equal the readings sent, or the run fails (exit 1).

`--compare N` first measures the ingest's drain rate with the journal against the ingest of
`--baseline-rev` (a git revision before the journal: acknowledge after InfluxDB), same broker,
same InfluxDB: N readings wait in the broker for the stopped ingest, which then starts and
stores them (InfluxDB up); msg/s and CPU per message. The figures go to BENCHMARKS.md.

Touches: child processes (Mosquitto, influxd, the ingest, publishers) and a temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path

from bench.harness import BENCH_BUCKETS, BenchEnv, Progress, bench_env, stderr_progress
from bench.procstat import ProcSample, peak_rss_bytes
from bench.runner import (
    PublisherProcess,
    RunFailedError,
    field_counts,
    verify_counts,
    wait_for_count,
    warm_up,
)
from bench.scenarios import IngestProcess, ingest_processes
from bench.workload import generate
from edgewatch.settings import load_settings
from ingest.journal import DB_NAME, disk_bytes
from stack.influxd import ensure_influxd

MB = 1024 * 1024
SAMPLE_SECONDS = 1.0
PROGRESS_SECONDS = 10.0
JOURNAL_TIMEOUT_SECONDS = 3600.0
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class OutageResult:
    readings: int
    publishers: int
    publish_s: float
    journaled_s: float
    journal_peak_bytes: int
    journal_peak_rows: int
    drain_s: float
    drain_msg_per_s: float
    stored: int
    ingest_peak_rss_mb: float
    mosquitto_peak_rss_mb: float
    problems: list[str]


@dataclass
class CompareResult:
    readings: int
    baseline_rev: str
    baseline_msg_per_s: float
    journal_msg_per_s: float
    baseline_cpu_us_per_msg: float
    journal_cpu_us_per_msg: float


@dataclass
class DrainRate:
    msg_per_s: float
    cpu_us_per_msg: float


def journal_rows(directory: Path) -> int:
    """Rows in the journal, cheaply (row ids are consecutive while nothing is removed)."""
    path = directory / DB_NAME
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
    try:
        low, high = db.execute("SELECT MIN(id), MAX(id) FROM entries").fetchone()
    except sqlite3.Error:
        return 0
    finally:
        db.close()
    return 0 if low is None else int(high) - int(low) + 1


def write_workload(root_dir: Path, *, readings: int, files: int, root: str) -> list[Path]:
    """The workload split round-robin over `files` files, one per publisher process."""
    now = int(time.time())
    paths = [root_dir / f"outage-{index}.tsv" for index in range(files)]
    handles = [path.open("wb") for path in paths]
    try:
        for index, message in enumerate(generate(root=root, count=readings, devices=1000, now=now)):
            handles[index % files].write(message.topic.encode() + b"\t" + message.payload + b"\n")
    finally:
        for handle in handles:
            handle.close()
    return paths


def start_publishers(env: BenchEnv, paths: list[Path], tag: str) -> list[PublisherProcess]:
    return [
        PublisherProcess(env=env, args=["--file", str(path)], client_id=f"outage-{tag}-{index}")
        for index, path in enumerate(paths)
    ]


def journal_ingest(env: BenchEnv, *, bucket: str, root: str) -> IngestProcess:
    """This tree's ingest; its journal is `env.root/ingest-journal/bench-ingest-1`."""
    (proc,) = ingest_processes(env, bucket=bucket, root=root, replicas=1)
    assert isinstance(proc, IngestProcess)
    return proc


def baseline_ingest(env: BenchEnv, *, bucket: str, root: str, rev: str) -> IngestProcess:
    """The ingest of git revision `rev`, run from its own extracted tree."""
    tree = env.root / f"baseline-{rev}"
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", rev, "ingest", "edgewatch"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    (proc,) = ingest_processes(env, bucket=bucket, root=root, replicas=1)
    assert isinstance(proc, IngestProcess)
    # The child runs with its data dir as cwd: `python -m ingest` imports this tree first.
    return IngestProcess(data_dir=tree, environment=proc.environment(), instance="baseline")


def drain_rate(
    env: BenchEnv,
    make_ingest: Callable[..., IngestProcess],
    *,
    readings: int,
    label: str,
    progress: Progress,
) -> DrainRate:
    """The ingest's own drain rate: `readings` wait in its broker session while it is stopped;
    msg/s from its start until all are stored, and its CPU (user + system) per message, less
    what a start costs (imports, connecting: measured on the warm-up start)."""
    bucket = env.create_bucket(f"compare-{label}")
    root = f"cmp{label}"
    ingest = make_ingest(env, bucket=bucket, root=root)
    (path,) = write_workload(env.root, readings=readings, files=1, root=root)
    ingest.start()  # makes the session and its subscription
    try:
        warm_up(env, bucket=bucket, root=root, progress=progress)
    except RunFailedError:
        progress(f"{label}: ingest log:\n{ingest.log_tail()}")
        ingest.stop()
        raise
    start_cpu = ProcSample.read(ingest.pid or 0)
    ingest.stop()
    (publisher,) = start_publishers(env, [path], label)
    publisher.result(timeout=1800)
    progress(f"{label}: {readings:,} readings wait in the broker; starting the ingest")
    started = time.time()
    ingest.start()
    try:
        waited = wait_for_count(
            env, bucket=bucket, expected=readings, progress=progress, label=label
        )
        end_cpu = ProcSample.read(ingest.pid or 0)
    finally:
        ingest.stop()
    if waited.done_at is None:
        raise RunFailedError(f"{label}: {waited.stored:,} of {readings:,} stored")
    cpu_s = (end_cpu.cpu_seconds if end_cpu else 0.0) - (
        start_cpu.cpu_seconds if start_cpu else 0.0
    )
    rate = readings / (waited.done_at - started)
    cpu_us = max(cpu_s, 0.0) * 1e6 / readings
    progress(
        f"{label}: {readings:,} readings in {waited.done_at - started:.1f} s = {rate:,.0f}/s, "
        f"ingest CPU {cpu_us:.0f} us/msg"
    )
    return DrainRate(msg_per_s=rate, cpu_us_per_msg=cpu_us)


def compare(
    env: BenchEnv, *, readings: int, baseline_rev: str, progress: Progress
) -> CompareResult:
    def base(env: BenchEnv, *, bucket: str, root: str) -> IngestProcess:
        return baseline_ingest(env, bucket=bucket, root=root, rev=baseline_rev)

    baseline = drain_rate(env, base, readings=readings, label="baseline", progress=progress)
    journal = drain_rate(env, journal_ingest, readings=readings, label="journal", progress=progress)
    return CompareResult(
        readings=readings,
        baseline_rev=baseline_rev,
        baseline_msg_per_s=round(baseline.msg_per_s),
        journal_msg_per_s=round(journal.msg_per_s),
        baseline_cpu_us_per_msg=round(baseline.cpu_us_per_msg, 1),
        journal_cpu_us_per_msg=round(journal.cpu_us_per_msg, 1),
    )


def outage(env: BenchEnv, *, readings: int, publishers: int, progress: Progress) -> OutageResult:
    bucket, root = BENCH_BUCKETS.raw, "edgewatch"
    paths = write_workload(env.root, readings=readings, files=publishers, root=root)
    ingest = journal_ingest(env, bucket=bucket, root=root)
    instance_dir = env.root / "ingest-journal" / "bench-ingest-1"
    ingest.start()
    peak_bytes = peak_rows = 0
    try:
        warm_up(env, bucket=bucket, root=root, progress=progress)
        progress("outage: stopping influxd")
        env.influxd.stop()
        started = time.monotonic()
        procs = start_publishers(env, paths, "outage")
        publish_s = journaled_s = 0.0
        next_progress = started + PROGRESS_SECONDS
        while True:
            rows = journal_rows(instance_dir)
            peak_rows = max(peak_rows, rows)
            peak_bytes = max(peak_bytes, disk_bytes(instance_dir))
            now = time.monotonic()
            if not publish_s and not any(p.running() for p in procs):
                publish_s = now - started
                for proc in procs:
                    proc.result(timeout=60)
                progress(f"outage: {readings:,} readings published in {publish_s:.1f} s")
            if publish_s and rows >= readings:
                journaled_s = now - started
                break
            if now >= next_progress:
                progress(
                    f"outage: {rows:,}/{readings:,} journaled, journal {peak_bytes / MB:,.0f} MB"
                )
                next_progress += PROGRESS_SECONDS
            if now - started > JOURNAL_TIMEOUT_SECONDS:
                raise RunFailedError(f"outage: only {rows:,} of {readings:,} journaled")
            time.sleep(SAMPLE_SECONDS)
        progress(f"outage: all journaled after {journaled_s:.1f} s; starting influxd")
        env.influxd.start()
        drain_started = time.time()
        waited = wait_for_count(
            env, bucket=bucket, expected=readings, progress=progress, label="drain"
        )
        drain_s = (waited.done_at or time.time()) - drain_started
        ingest_rss = peak_rss_bytes(ingest.pid or 0) or 0
        broker_rss = peak_rss_bytes(env.mosquitto.pid or 0) or 0
    finally:
        ingest.stop()
    problems = verify_counts(field_counts(env, bucket=bucket), readings)
    return OutageResult(
        readings=readings,
        publishers=publishers,
        publish_s=round(publish_s, 1),
        journaled_s=round(journaled_s, 1),
        journal_peak_bytes=peak_bytes,
        journal_peak_rows=peak_rows,
        drain_s=round(drain_s, 1),
        drain_msg_per_s=round(readings / drain_s) if drain_s > 0 else 0,
        stored=waited.stored,
        ingest_peak_rss_mb=round(ingest_rss / MB, 1),
        mosquitto_peak_rss_mb=round(broker_rss / MB, 1),
        problems=problems,
    )


def table(result: OutageResult, comparison: CompareResult | None) -> str:
    rows = [
        ("readings published (InfluxDB down)", f"{result.readings:,}"),
        ("publishers", str(result.publishers)),
        ("publish time", f"{result.publish_s:.1f} s"),
        ("all journaled after", f"{result.journaled_s:.1f} s"),
        ("journal peak bytes (disk)", f"{result.journal_peak_bytes:,}"),
        ("drain time (InfluxDB back)", f"{result.drain_s:.1f} s"),
        ("drain rate", f"{result.drain_msg_per_s:,} readings/s"),
        ("stored count", f"{result.stored:,}"),
        ("ingest peak RSS", f"{result.ingest_peak_rss_mb:.1f} MB"),
        ("mosquitto peak RSS", f"{result.mosquitto_peak_rss_mb:.1f} MB"),
        ("result", "ok" if not result.problems else "FAILED: " + "; ".join(result.problems)),
    ]
    if comparison is not None:
        ratio = comparison.journal_msg_per_s / comparison.baseline_msg_per_s
        rows += [
            (
                f"ingest drain rate, {comparison.readings:,} queued readings: journal",
                f"{comparison.journal_msg_per_s:,.0f} msg/s",
            ),
            (
                f"  same, ingest of {comparison.baseline_rev} (no journal)",
                f"{comparison.baseline_msg_per_s:,.0f} msg/s",
            ),
            ("  ratio journal / no journal", f"{ratio:.2f}"),
            (
                "  ingest CPU per message: journal / no journal",
                f"{comparison.journal_cpu_us_per_msg:.0f} / "
                f"{comparison.baseline_cpu_us_per_msg:.0f} us",
            ),
        ]
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name:<{width}} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None, progress: Callable[[str], None] = stderr_progress) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.outage", description=__doc__)
    parser.add_argument("--readings", type=int, default=2_000_000)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--compare", type=int, default=0, metavar="N")
    parser.add_argument("--baseline-rev", default="", help="git revision without the journal")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.readings < 1 or args.publishers < 1:
        parser.error("--readings and --publishers must be at least 1")
    if args.compare and not args.baseline_rev:
        parser.error("--compare needs --baseline-rev (a git revision before the journal)")
    settings = load_settings()
    binary = ensure_influxd(settings.cache_dir, settings.influxdb_version, progress=progress)
    comparison = None
    try:
        if args.compare:
            with bench_env(influxd_binary=binary, name="outage-compare", progress=progress) as env:
                comparison = compare(
                    env, readings=args.compare, baseline_rev=args.baseline_rev, progress=progress
                )
        with bench_env(influxd_binary=binary, name="outage", progress=progress) as env:
            result = outage(
                env, readings=args.readings, publishers=args.publishers, progress=progress
            )
    except RunFailedError as exc:
        progress(f"FAILED: {exc}")
        return 1
    print(table(result, comparison), flush=True)
    if args.json is not None:
        payload = {"outage": asdict(result), "compare": comparison and asdict(comparison)}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if not result.problems else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
