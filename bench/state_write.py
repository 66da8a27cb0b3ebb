"""bench room: what the state bucket's second write per batch costs the ingest's sink.

`python -m bench.state_write`: against a fresh influxd (bench_env), stores the same batches of
decoded telemetry (one reading of 10 metrics per message, 1,000 devices, 5,000-line batches
as the ingest cuts them) through `InfluxSink`, raw only (the peer) and raw + state, in
alternating rounds, and prints messages per second of each and their ratio. Touches: child
processes, a temp dir, loopback ports (through bench_env).
"""

from __future__ import annotations

import argparse
import json
import threading
import time

from bench.harness import BenchEnv, bench_env, stderr_progress
from edgewatch.models import InboundMessage
from edgewatch.settings import load_settings
from ingest.influx_sink import ClientWriter, InfluxSink
from ingest.pipeline import Entry, to_entry
from stack.influxd import ensure_influxd

ROOT = "bench"
DEVICES = 1000
METRICS = 10
BATCH_LINES = 5000
NS = 1_000_000_000


def entries(messages: int, start_ns: int) -> list[Entry]:
    """`messages` telemetry messages, round-robin over the devices, one second apart each."""
    out = []
    for i in range(messages):
        device = i % DEVICES
        ts = start_ns + (i // DEVICES) * NS
        metrics = ",".join(f'"m{k}": {k + i % 7}.5' for k in range(METRICS))
        payload = f'{{"ts": {ts / NS:.9f}, "seq": {i}, "metrics": {{{metrics}}}}}'.encode()
        topic = f"{ROOT}/site-{device % 10}/dev-{device:04d}/telemetry"
        received = start_ns + i * 1000
        out.append(
            to_entry(
                InboundMessage(topic, payload, received, ack_token=i), root=ROOT, instance="bench"
            )
        )
    return out


def batches(items: list[Entry]) -> list[list[Entry]]:
    out: list[list[Entry]] = []
    current: list[Entry] = []
    lines = 0
    for entry in items:
        current.append(entry)
        lines += len(entry.lines)
        if lines >= BATCH_LINES:
            out.append(current)
            current, lines = [], 0
    if current:
        out.append(current)
    return out


def writer(env: BenchEnv, bucket: str) -> ClientWriter:
    return ClientWriter(
        url=env.url, org=env.org, bucket=bucket, token=env.token, timeout_seconds=60
    )


def measure(env: BenchEnv, messages: int, rounds: int) -> dict[str, object]:
    never = threading.Event()
    rates: dict[str, list[float]] = {"raw only": [], "raw + state": []}
    for r in range(rounds):
        for label, measured in rates.items():
            # Fresh timestamps each run: a write that overwrites stored points is not the case
            # being measured.
            start = time.time_ns() - 3600 * NS + r * 10 * NS * messages // DEVICES
            work = batches(entries(messages, start + (label == "raw only") * NS // 2))
            state = writer(env, env.buckets.state) if label == "raw + state" else None
            sink = InfluxSink(post=writer(env, env.buckets.raw), state_post=state)
            began = time.perf_counter()
            for batch in work:
                result = sink.store(batch, give_up=never)
                assert result.complete and not result.refused
            measured.append(messages / (time.perf_counter() - began))
    best = {label: max(values) for label, values in rates.items()}
    return {
        "messages_per_round": messages,
        "rounds": rounds,
        "messages_per_second_best": {k: round(v) for k, v in best.items()},
        "ratio_state_to_raw_only": round(best["raw + state"] / best["raw only"], 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = load_settings()
    binary = ensure_influxd(settings.cache_dir, settings.influxdb_version)
    with bench_env(influxd_binary=binary, name="state-write", progress=stderr_progress) as env:
        print(json.dumps(measure(env, args.messages, args.rounds), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
