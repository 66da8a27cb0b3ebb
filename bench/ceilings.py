"""bench room: what this machine can do at most, without the ingest in the way.

Database ceiling: the very lines the ingest would store for the workload, prepared as gzip
batches of `DB_BATCH_LINES` lines and written straight to `/api/v2/write` by `DB_WRITERS`
concurrent writers. Broker ceiling: the workload published by the same QoS 1 publisher as the
scenarios to Mosquitto's own C subscriber (`mosquitto_sub`, QoS 1), no database. Touches: the
bench's broker and InfluxDB, a `mosquitto_sub` child.
"""

from __future__ import annotations

import gzip
import http.client
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.harness import BenchEnv, Progress
from bench.runner import PublisherProcess, RunFailedError, field_counts, publish_one, verify_counts
from bench.workload import WARMUP_SITE, line_protocol, warmup_message

DB_BATCH_LINES = 5000
DB_WRITERS = 2
GZIP_LEVEL = 1  # the ingest's level
SUBSCRIBER_TIMEOUT_SECONDS = 600.0


def prepare_batches(lines: list[str], batch_lines: int = DB_BATCH_LINES) -> list[bytes]:
    return [
        gzip.compress("\n".join(lines[i : i + batch_lines]).encode(), GZIP_LEVEL)
        for i in range(0, len(lines), batch_lines)
    ]


def _writer(env: BenchEnv, bucket: str, batches: queue.Queue[bytes], errors: list[str]) -> None:
    parts = urlsplit(env.url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    path = f"/api/v2/write?org={env.org}&bucket={bucket}&precision=ns"
    headers = {
        "Authorization": f"Token {env.token}",
        "Content-Encoding": "gzip",
        "Content-Type": "text/plain; charset=utf-8",
    }
    try:
        while True:
            try:
                body = batches.get_nowait()
            except queue.Empty:
                return
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read()
            if resp.status != 204:
                errors.append(f"write answered {resp.status}: {text[:200]!r}")
                return
    finally:
        conn.close()


def database_ceiling(
    env: BenchEnv, *, payloads: Path, root: str, messages: int, progress: Progress
) -> dict[str, Any]:
    bucket = env.create_bucket("bench_db_ceiling")
    progress("database ceiling: preparing line protocol batches (not timed)")
    lines = line_protocol(payloads, root=root, received_ns=time.time_ns())
    batches = prepare_batches(lines)
    work: queue.Queue[bytes] = queue.Queue()
    for body in batches:
        work.put(body)
    errors: list[str] = []
    progress(f"database ceiling: writing {len(lines):,} lines in {len(batches)} batches")
    started = time.time()
    threads = [
        threading.Thread(target=_writer, args=(env, bucket, work, errors))
        for _ in range(DB_WRITERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.time() - started
    problems = list(errors) or verify_counts(field_counts(env, bucket=bucket), messages)
    result: dict[str, Any] = {
        "ok": not problems,
        "error": "; ".join(problems) or None,
        "messages": messages,
        "lines": len(lines),
        "batches": len(batches),
        "writers": DB_WRITERS,
        "seconds": seconds,
        "messages_per_s": messages / seconds,
        "lines_per_s": len(lines) / seconds,
        "count_verified": not problems,
    }
    progress(f"database ceiling: {result['messages_per_s']:,.0f} msg/s ({seconds:.1f} s)")
    return result


def broker_ceiling(
    env: BenchEnv, *, payloads: Path, root: str, messages: int, progress: Progress
) -> dict[str, Any]:
    binary = shutil.which("mosquitto_sub")
    if binary is None:
        raise RunFailedError("mosquitto_sub is missing (apt-get install mosquitto-clients)")
    argv = [
        binary, "-h", env.mosquitto.host, "-p", str(env.mosquitto.port),
        "-q", "1", "-c", "-i", "edgewatch-bench-sub",
        "-t", f"{root}/+/+/telemetry", "-F", "%t",
    ]  # fmt: skip
    sub = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    received = 0
    subscribed = threading.Event()
    done_at: list[float] = []
    warmup_marker = f"/{WARMUP_SITE}/".encode()

    def drain() -> None:
        # One topic per line; warm-ups show the subscription is live and are not counted.
        nonlocal received
        assert sub.stdout is not None
        for line in sub.stdout:
            if warmup_marker in line:
                subscribed.set()
                continue
            received += 1
            if received >= messages:
                done_at.append(time.time())
                return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        for _ in range(50):
            warm = warmup_message(root, time.time())
            publish_one(env, warm.topic, warm.payload)
            if subscribed.wait(0.2):
                break
        else:
            raise RunFailedError("mosquitto_sub did not receive the warm-up message")
        progress(f"broker ceiling: publishing {messages:,} messages to mosquitto_sub")
        pub = PublisherProcess(
            env=env, args=["--file", str(payloads)], client_id="edgewatch-bench-pub-broker"
        )
        result = pub.result(timeout=SUBSCRIBER_TIMEOUT_SECONDS)
        reader.join(timeout=SUBSCRIBER_TIMEOUT_SECONDS)
    finally:
        if sub.poll() is None:
            sub.terminate()
            sub.wait()
    seconds = (done_at[0] if done_at else time.time()) - result.first_publish
    got = received
    ok = got >= messages
    out: dict[str, Any] = {
        "ok": ok,
        "error": None if ok else f"subscriber got {got:,} of {messages:,}",
        "messages": messages,
        "received": got,
        "seconds": seconds,
        "messages_per_s": messages / seconds,
        "publish_seconds": result.all_acked - result.first_publish,
        "publisher_messages_per_s": messages / (result.all_acked - result.first_publish),
        "count_verified": ok,
    }
    progress(f"broker ceiling: {out['messages_per_s']:,.0f} msg/s ({seconds:.1f} s)")
    return out
