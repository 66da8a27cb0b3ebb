"""bench room: `edgewatch bench`, the one command that measures and writes the figures.

Runs, each against its own fresh Mosquitto and influxd on loopback: the machine's ceilings
(database, broker), the ingest alone, two ingest replicas on a shared subscription, Telegraf,
and the dashboard's queries on a seeded fleet. Prints a table, writes the results as JSON and
(for a full run) BENCHMARKS.md. Progress goes to stderr throughout.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import Progress, bench_env, stderr_progress
from bench.publisher import PROBES_PER_SECOND
from bench.queries import QueryPlanConfig, run_query_bench
from bench.report import (
    SCHEMA_VERSION,
    console_summary,
    existing_notes,
    machine,
    ratios,
    render_markdown,
    targets,
    versions,
)
from bench.runner import RunFailedError
from bench.scenarios import LoadPlan, ingest_processes, run_scenario, telegraf_processes
from bench.telegraf import TELEGRAF_VERSION, ensure_telegraf
from bench.workload import METRIC_NAMES, generate, write_messages
from edgewatch.settings import load_settings
from stack.influxd import ensure_influxd

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
TOPIC_ROOT = "edgewatch"
PUBLISHER_MAX_INFLIGHT = 1000
PARTS: tuple[str, ...] = (
    "ceilings", "edgewatch", "edgewatch_x2", "telegraf", "drain", "queries",
)  # fmt: skip
DRAIN_DEVICES = 1000


@dataclass(frozen=True, slots=True)
class Profile:
    messages: int
    devices: int
    latency_rate: float
    latency_seconds: float
    queries: QueryPlanConfig
    drain_readings: int = 120_000


FULL = Profile(
    messages=200_000,
    devices=1000,
    latency_rate=2000.0,
    latency_seconds=20.0,
    queries=QueryPlanConfig(
        trend_devices_seeded=100,
        fleet_devices=1000,
        rollup_days=30,
        raw_hours=24,
        raw_interval_seconds=10,
        reps=10,
    ),
)
QUICK = Profile(
    messages=5000,
    devices=100,
    latency_rate=500.0,
    latency_seconds=5.0,
    queries=QueryPlanConfig(
        trend_devices_seeded=20,
        fleet_devices=1000,
        rollup_days=2,
        raw_hours=24,
        raw_interval_seconds=60,
        reps=3,
    ),
    drain_readings=5000,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark the ingest against Telegraf and the machine's ceilings",
        description=(
            "Measure the ingest (alone and as two replicas), Telegraf at equal delivery "
            "guarantees, the database and broker ceilings, and the dashboard's queries, each "
            "on its own Mosquitto and influxd on loopback. Writes bench/results/latest.json "
            "and BENCHMARKS.md (a --quick run writes bench/results/quick.json only)."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="a small run (about 3 minutes)")
    parser.add_argument("--count", type=int, help="telemetry messages per run")
    parser.add_argument("--devices", type=int, help="devices the messages come from")
    parser.add_argument("--latency-rate", type=float, help="msg/s of the latency phase")
    parser.add_argument("--latency-seconds", type=float, help="length of the latency phase")
    parser.add_argument("--drain-readings", type=int, help="readings queued per drain run")
    parser.add_argument("--reps", type=int, help="repetitions of each query")
    parser.add_argument(
        "--only", action="append", choices=PARTS, help="run only this part (repeatable)"
    )
    parser.add_argument("--output", type=Path, help="results JSON (default bench/results/...)")
    parser.add_argument(
        "--markdown", type=Path, help="BENCHMARKS.md to write (default: repo's, full runs only)"
    )
    parser.set_defaults(func=run)


def _profile(args: argparse.Namespace) -> Profile:
    base = QUICK if args.quick else FULL
    q = base.queries
    return Profile(
        messages=args.count or base.messages,
        devices=args.devices or min(base.devices, max(1, (args.count or base.messages) // 5)),
        latency_rate=args.latency_rate or base.latency_rate,
        latency_seconds=args.latency_seconds or base.latency_seconds,
        queries=QueryPlanConfig(
            trend_devices_seeded=q.trend_devices_seeded,
            fleet_devices=q.fleet_devices,
            rollup_days=q.rollup_days,
            raw_hours=q.raw_hours,
            raw_interval_seconds=q.raw_interval_seconds,
            reps=args.reps or q.reps,
        ),
        drain_readings=args.drain_readings or base.drain_readings,
    )


def _failed(error: BaseException) -> dict[str, Any]:
    return {"ok": False, "error": str(error)}


def _results_header(
    *,
    profile: Profile,
    parts: tuple[str, ...],
    mode: str,
    command: str,
    influxd: Path,
    telegraf: Path | None,
) -> dict[str, Any]:
    """What a results file says about the run itself: when, where, which versions, config."""
    return {
        "schema_version": SCHEMA_VERSION,
        "mode": mode,
        "date": datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "parts": list(parts),
        "machine": machine(),
        "versions": versions(influxd=influxd, telegraf=telegraf, telegraf_version=TELEGRAF_VERSION),
        "config": {
            "messages": profile.messages,
            "devices": profile.devices,
            "metrics_per_message": len(METRIC_NAMES),
            "topic_root": TOPIC_ROOT,
            "publisher_max_inflight": PUBLISHER_MAX_INFLIGHT,
            "latency_rate_per_s": profile.latency_rate,
            "latency_seconds": profile.latency_seconds,
            "latency_probes_per_s": PROBES_PER_SECOND,
            "broker_max_inflight_messages": 0,
        },
        "ceilings": {},
        "scenarios": {},
    }


def _run_ceilings(
    influxd: Path, payloads: Path, profile: Profile, progress: Progress
) -> dict[str, Any]:
    # Imported late: the ceilings module pulls in the publisher helpers.
    from bench.ceilings import broker_ceiling, database_ceiling  # noqa: PLC0415

    ceilings: dict[str, Any] = {}
    with bench_env(influxd_binary=influxd, name="ceilings", progress=progress) as env:
        for key, fn in (("database", database_ceiling), ("broker", broker_ceiling)):
            try:
                ceilings[key] = fn(
                    env,
                    payloads=payloads,
                    root=TOPIC_ROOT,
                    messages=profile.messages,
                    progress=progress,
                )
            except (RunFailedError, RuntimeError, OSError) as exc:
                progress(f"{key} ceiling FAILED: {exc}")
                ceilings[key] = _failed(exc)
    return ceilings


def _run_scenarios(
    influxd: Path, telegraf: Path, plan: LoadPlan, parts: tuple[str, ...], progress: Progress
) -> dict[str, Any]:
    scenarios: list[tuple[str, str, Any]] = [
        ("edgewatch", "1 ingest process",
         lambda env, bucket: ingest_processes(env, bucket=bucket, root=TOPIC_ROOT, replicas=1)),
        ("edgewatch_x2", "2 ingest replicas, shared subscription",
         lambda env, bucket: ingest_processes(env, bucket=bucket, root=TOPIC_ROOT, replicas=2)),
        ("telegraf", f"Telegraf {TELEGRAF_VERSION}",
         lambda env, bucket: telegraf_processes(
             env, bucket=bucket, root=TOPIC_ROOT, binary=telegraf)),
    ]  # fmt: skip
    results: dict[str, Any] = {}
    for name, description, factory in scenarios:
        if name not in parts:
            continue
        with bench_env(influxd_binary=influxd, name=name, progress=progress) as env:
            results[name] = run_scenario(
                env,
                name=name,
                description=description,
                factory=factory,
                plan=plan,
                progress=progress,
            )
    return results


def _run_drain(
    influxd: Path, telegraf: Path, profile: Profile, tmp: Path, progress: Progress
) -> dict[str, Any]:
    """Drain mode (bench/drain.py): every consumer on its own broker and InfluxDB."""
    from bench import drain  # noqa: PLC0415

    workloads = drain.write_workloads(
        tmp,
        root=TOPIC_ROOT,
        readings=profile.drain_readings,
        devices=min(DRAIN_DEVICES, max(1, profile.drain_readings // drain.BATCH_SIZE)),
        now=int(time.time()),
    )
    consumers: list[tuple[str, Any]] = [
        ("edgewatch", lambda batch: lambda env, bucket: ingest_processes(
            env, bucket=bucket, root=TOPIC_ROOT, replicas=1)),
        ("edgewatch_x2", lambda batch: lambda env, bucket: ingest_processes(
            env, bucket=bucket, root=TOPIC_ROOT, replicas=2)),
        ("telegraf", lambda batch: drain.telegraf_factory(telegraf, TOPIC_ROOT, batch=batch)),
    ]  # fmt: skip
    out: dict[str, Any] = {
        "readings": profile.drain_readings,
        "fields_per_reading": drain.FIELDS_PER_READING,
        "batch_size": drain.BATCH_SIZE,
        "messages": {w.name: w.messages for w in workloads},
    }
    for name, factory in consumers:
        out[name] = {}
        with bench_env(influxd_binary=influxd, name=f"drain-{name}", progress=progress) as env:
            for workload in workloads:
                try:
                    out[name][workload.name] = drain.drain_consumer(
                        env,
                        name=name,
                        factory=factory(workload.name == "batch"),
                        workload=workload,
                        root=TOPIC_ROOT,
                        progress=progress,
                    )
                except (RunFailedError, RuntimeError, OSError) as exc:
                    progress(f"drain {name} {workload.name} FAILED: {exc}")
                    out[name][workload.name] = _failed(exc)
    from bench.ceilings import database_ceiling  # noqa: PLC0415

    out["broker"] = {}
    with bench_env(influxd_binary=influxd, name="drain-ceilings", progress=progress) as env:
        for workload in workloads:
            try:
                out["broker"][workload.name] = drain.drain_broker(
                    env, workload=workload, root=TOPIC_ROOT, progress=progress
                )
            except (RunFailedError, RuntimeError, OSError) as exc:
                out["broker"][workload.name] = _failed(exc)
        try:
            out["database"] = drain.database_ceiling_fields(
                database_ceiling(
                    env,
                    payloads=workloads[0].payloads,
                    root=TOPIC_ROOT,
                    messages=profile.drain_readings,
                    progress=progress,
                )
            )
        except (RunFailedError, RuntimeError, OSError) as exc:
            out["database"] = _failed(exc)
    return out


def run_bench(
    *,
    profile: Profile,
    parts: tuple[str, ...],
    mode: str,
    command: str,
    progress: Progress,
) -> dict[str, Any]:
    started = time.monotonic()
    settings = load_settings()
    influxd = ensure_influxd(settings.cache_dir, settings.influxdb_version, progress=progress)
    telegraf = Path()
    if "telegraf" in parts or "drain" in parts:
        telegraf = ensure_telegraf(settings.cache_dir, TELEGRAF_VERSION, progress=progress)
    results = _results_header(
        profile=profile,
        parts=parts,
        mode=mode,
        command=command,
        influxd=influxd,
        telegraf=telegraf if ("telegraf" in parts or "drain" in parts) else None,
    )
    with tempfile.TemporaryDirectory(prefix="edgewatch-bench-") as tmp:
        payloads = Path(tmp) / "payloads.tsv"
        progress(f"generating {profile.messages:,} messages from {profile.devices:,} devices")
        write_messages(
            payloads,
            generate(
                root=TOPIC_ROOT,
                count=profile.messages,
                devices=profile.devices,
                now=int(time.time()),
            ),
        )
        plan = LoadPlan(
            payloads=payloads,
            messages=profile.messages,
            devices=profile.devices,
            root=TOPIC_ROOT,
            latency_rate=profile.latency_rate,
            latency_seconds=profile.latency_seconds,
        )
        if "ceilings" in parts:
            results["ceilings"] = _run_ceilings(influxd, payloads, profile, progress)
        results["scenarios"] = _run_scenarios(influxd, telegraf, plan, parts, progress)
        if "drain" in parts:
            results["drain"] = _run_drain(influxd, telegraf, profile, Path(tmp), progress)
    if "queries" in parts:
        with bench_env(influxd_binary=influxd, name="queries", progress=progress) as env:
            try:
                results["queries"] = run_query_bench(env, profile.queries, progress)
            except (RuntimeError, OSError, ImportError) as exc:
                progress(f"query bench FAILED: {exc}")
                results["queries"] = {**_failed(exc), "results": []}
    results["ratios"] = ratios(results)
    results["targets"] = targets(results)
    results["elapsed_s"] = time.monotonic() - started
    results["ok"] = all_ok(results)
    return results


def all_ok(results: dict[str, Any]) -> bool:
    sections = [*results["ceilings"].values(), *results["scenarios"].values()]
    drain = results.get("drain", {})
    sections += [
        run
        for key, value in drain.items()
        if isinstance(value, dict) and key != "messages"
        for run in ([value] if key == "database" else value.values())
    ]
    if any(not s.get("ok") for s in sections):
        return False
    return not ("queries" in results and results["queries"].get("ok") is False)


def run(args: argparse.Namespace) -> int:
    profile = _profile(args)
    parts = tuple(args.only) if args.only else PARTS
    mode = "quick" if args.quick else "full"
    tail = sys.argv[sys.argv.index("bench") + 1 :] if "bench" in sys.argv else []
    command = " ".join(["edgewatch", "bench", *map(shlex.quote, tail)])
    output: Path = args.output or RESULTS_DIR / ("quick.json" if args.quick else "latest.json")
    markdown: Path | None = args.markdown or (None if args.quick else REPO_DIR / "BENCHMARKS.md")
    results = run_bench(
        profile=profile, parts=parts, mode=mode, command=command, progress=stderr_progress
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    print(console_summary(results))
    stderr_progress(f"results written to {output}")
    if markdown is not None:
        markdown.write_text(render_markdown(results, existing_notes(markdown)))
        stderr_progress(f"{markdown} written")
    return 0 if results["ok"] else 1
