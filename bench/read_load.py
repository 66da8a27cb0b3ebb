"""bench room: no read load can take the database down (the fleet overview under load).

`python -m bench.read_load [--clients 10] [--seconds 600] [--devices 10000]` seeds a state
bucket with `devices` devices, starts one ingest and a publisher at a fixed rate, and runs
`clients` threads that each call the dashboard's own `FleetStore.fleet` back to back, with
the dashboard's client timeout, each on its own InfluxDBClient (the worst case: no shared
cache, no single flight between them, as from that many dashboard processes). influxd's RSS is
sampled every second. At the end: every published reading must be stored, influxd must still
answer /health, and its peak RSS is reported. Writes bench/results/read_load.json. Touches: its
own Mosquitto and influxd (started with the query limits of stack/processes.py), child
processes, a temp dir.
"""

from __future__ import annotations

import argparse
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import BenchEnv, bench_env, stderr_progress, write_result
from bench.procstat import ProcSample
from bench.queries import (
    STATE_LINES_PER_DEVICE,
    Seeder,
    fleet_lines,
    fleet_state_lines,
    fleet_store,
)
from bench.runner import PublisherProcess, field_counts, wait_for_count, warm_up
from bench.scenarios import ingest_processes
from edgewatch.settings import load_settings
from stack.influxd import ensure_influxd
from stack.processes import (
    INFLUXD_GO_MEMORY_LIMIT,
    QUERY_CONCURRENCY,
    QUERY_MAX_MEMORY_BYTES,
    QUERY_MEMORY_BYTES,
    QUERY_QUEUE_SIZE,
    influxd_healthy,
)

RESULTS = Path(__file__).resolve().parent / "results" / "read_load.json"
DASHBOARD_TIMEOUT_S = 10.0
INGEST_RATE = 500.0
MB = 1024 * 1024
NS = 1_000_000_000
# The stated bound on influxd's resident memory under this load: Go's soft limit
# (INFLUXD_GO_MEMORY_LIMIT, 1.5 GiB) plus 0.5 GiB for what the Go heap does not count (the
# mapped TSM files' resident pages, the runtime's own).
INFLUXD_RSS_BOUND_MB = 2048.0


def _rss_mb(pid: int | None) -> float | None:
    """Resident memory now (VmRSS), MB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (OSError, TypeError):
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def _query_gauges(url: str) -> tuple[int, int] | None:
    """(executing, queueing) Flux queries now, from influxd's query controller metrics."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:  # noqa: S310 - loopback
            text = resp.read().decode()
    except OSError:
        return None
    found = {"qc_executing_active": 0, "qc_queueing_active": 0}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in found:
            found[name] += int(float(line.rsplit(" ", 1)[1]))
    return found["qc_executing_active"], found["qc_queueing_active"]


def _hwm_mb(pid: int | None) -> float | None:
    """The process's own high-water mark of resident memory (VmHWM), MB."""
    sample = ProcSample.read(pid) if pid is not None else None
    return None if sample is None else sample.peak_rss_bytes / MB


class Clients:
    """`count` threads calling FleetStore.fleet until stopped; outcomes and times counted."""

    def __init__(self, env: BenchEnv, count: int) -> None:
        self.env = env
        self.count = count
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[float] = []
        self.failures: dict[str, int] = {}
        self.examples: dict[str, str] = {}
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def _run(self) -> None:
        store, client = fleet_store(self.env, timeout_s=DASHBOARD_TIMEOUT_S)
        try:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                try:
                    store.fleet(time.time_ns())
                except RuntimeError as exc:  # StoreUnavailableError: timeouts, limits
                    text = str(exc)
                    kind = (
                        "timeout" if "ran past" in text
                        else "memory limit" if "memory" in text
                        else "queue full" if "busy" in text
                        else "other"
                    )  # fmt: skip
                    with self.lock:
                        self.failures[kind] = self.failures.get(kind, 0) + 1
                        self.examples.setdefault(kind, text)
                    continue
                with self.lock:
                    self.answers.append((time.perf_counter() - t0) * 1000.0)
        finally:
            client.close()


def run(clients: int, seconds: float, devices: int) -> dict[str, Any]:
    progress = stderr_progress
    settings = load_settings()
    influxd = ensure_influxd(settings.cache_dir, settings.influxdb_version, progress=progress)
    with bench_env(influxd_binary=influxd, name="read-load", progress=progress) as env:
        now_s = int(datetime.now(tz=UTC).timestamp())
        seeder = Seeder(env, progress)
        seeder.seed(
            env.buckets.state,
            fleet_state_lines(devices, now_s),
            label=f"state ({devices:,} devices)",
            total=devices * STATE_LINES_PER_DEVICE,
        )
        seeder.seed(env.buckets.raw, fleet_lines(10, now_s), label="heartbeat", total=52)
        bucket = env.create_bucket("read_load_raw")
        procs = ingest_processes(env, bucket=bucket, root="edgewatch", replicas=1)
        for proc in procs:
            proc.start()
        try:
            warm_up(env, bucket=bucket, root="edgewatch", progress=progress)
            rss_idle = _rss_mb(env.influxd.pid)
            load = Clients(env, clients)
            for t in load.threads:
                t.start()
            progress(f"{clients} clients on the fleet overview; ingest at {INGEST_RATE:.0f} msg/s")
            pub = PublisherProcess(
                env=env,
                args=["--rate", str(INGEST_RATE), "--seconds", str(seconds), "--devices", "1000"],
                client_id="edgewatch-bench-read-load",
            )
            peak = rss_idle or 0.0
            samples: list[float] = []
            healthy_misses = 0
            most_executing = most_queueing = 0
            while pub.running():
                gauges = _query_gauges(env.url)
                if gauges is not None:
                    most_executing = max(most_executing, gauges[0])
                    most_queueing = max(most_queueing, gauges[1])
                rss = _rss_mb(env.influxd.pid)
                if rss is not None:
                    samples.append(rss)
                    peak = max(peak, rss)
                if not influxd_healthy(env.url, timeout_seconds=2.0):
                    healthy_misses += 1
                time.sleep(1.0)
            published = pub.result(timeout=60)
            load.stop.set()
            for t in load.threads:
                t.join(timeout=DASHBOARD_TIMEOUT_S * 2)
            # Abandoned queries must not keep running: the controller's gauges once the
            # clients are gone (they close the connection when they give up).
            time.sleep(2.0)
            after_clients = _query_gauges(env.url)
            wait = wait_for_count(
                env, bucket=bucket, expected=published.published, progress=progress,
                label="read load ingest",
            )  # fmt: skip
            counts = field_counts(env, bucket=bucket)
            time.sleep(5.0)
            rss_after = _rss_mb(env.influxd.pid)
            hwm = _hwm_mb(env.influxd.pid)
            health_after = influxd_healthy(env.url)
        finally:
            for proc in procs:
                proc.stop()
    answers = sorted(load.answers)
    stored_all = wait.done_at is not None and min(counts.values(), default=0) >= published.published
    return {
        "ok": stored_all and health_after and healthy_misses == 0 and peak <= INFLUXD_RSS_BOUND_MB,
        "clients": clients,
        "seconds": seconds,
        "devices": devices,
        "client_timeout_s": DASHBOARD_TIMEOUT_S,
        "influxd_limits": {
            "query_concurrency": QUERY_CONCURRENCY,
            "query_queue_size": QUERY_QUEUE_SIZE,
            "query_memory_bytes": QUERY_MEMORY_BYTES,
            "query_max_memory_bytes": QUERY_MAX_MEMORY_BYTES,
            "go_memory_limit": INFLUXD_GO_MEMORY_LIMIT,
        },
        "influxd_rss_bound_mb": INFLUXD_RSS_BOUND_MB,
        "influxd_rss_within_bound": peak <= INFLUXD_RSS_BOUND_MB,
        "answers": len(answers),
        "answer_median_ms": answers[len(answers) // 2] if answers else None,
        "answer_max_ms": answers[-1] if answers else None,
        "failures": load.failures,
        "failure_examples": load.examples,
        "influxd_rss_idle_mb": rss_idle,
        "influxd_rss_peak_mb": peak,
        "influxd_rss_after_mb": rss_after,
        "influxd_vmhwm_mb": hwm,
        "health_misses_during": healthy_misses,
        "queries_executing_max": most_executing,
        "queries_queueing_max": most_queueing,
        "queries_executing_2s_after_clients_stopped": after_clients and after_clients[0],
        "queries_queueing_2s_after_clients_stopped": after_clients and after_clients[1],
        "health_after": health_after,
        "ingest_published": published.published,
        "ingest_stored": wait.stored,
        "ingest_stored_every_reading": stored_all,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.read_load", description=__doc__)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(args.clients, args.seconds, args.devices)
    write_result(args.output, result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
