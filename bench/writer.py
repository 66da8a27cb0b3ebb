"""bench room: the ingest's InfluxDB writer against influxdb-client's, `python -m bench.writer`.

The same batches (the bench workload as the ingest's line protocol, `--batch` lines each) are
written, one synchronous POST after the other as the ingest's journal writer does, by:

- `http.client`: `HttpWriter` below, the ingest's former hand-written writer (one keep-alive
  connection, gzip level 1), kept here as the peer it was replaced on;
- `influxdb-client service`: the ingest's `ClientWriter`, influxdb-client's WriteService with
  the same gzip level 1 body;
- `influxdb-client write_api`: the library's documented path (`write_api(SYNCHRONOUS)`,
  `enable_gzip=True`, a list of lines), which gzips at level 9.

Each writer has its own bucket; the order rotates every repetition. Prints wall time, lines/s
and this process's CPU per batch (what the writer costs the ingest), medians over the
repetitions. Touches: its own Mosquitto and influxd (bench_env), a temp dir.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision

from bench.harness import BenchEnv, bench_env, stderr_progress
from bench.workload import generate, line_protocol, write_messages
from edgewatch.settings import load_settings
from ingest.influx_sink import (
    ClientWriter,
    WriteResponse,
    encode_body,
    error_text,
    parse_retry_after,
)
from stack.influxd import ensure_influxd

WriteBatch = Callable[[Sequence[str]], None]


class HttpWriter:
    """One keep-alive `http.client` connection to InfluxDB's write endpoint; one POST a call."""

    def __init__(
        self,
        *,
        url: str,
        org: str,
        bucket: str,
        token: str,
        timeout_seconds: float,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"INFLUXDB_V2_URL must be http(s)://host:port, not {url!r}")
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = parsed.port or (443 if self._https else 80)
        query = urllib.parse.urlencode({"org": org, "bucket": bucket, "precision": "ns"})
        self._path = f"{parsed.path.rstrip('/')}/api/v2/write?{query}"
        self._headers = {
            "Authorization": f"Token {token}",
            "Content-Type": "text/plain; charset=utf-8",
            "Content-Encoding": "gzip",
            "Accept": "application/json",
        }
        self._timeout = timeout_seconds
        self._wall_clock = wall_clock
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __call__(self, body: bytes) -> WriteResponse:
        try:
            conn = self._connection()
            conn.request("POST", self._path, body=body, headers=self._headers)
            resp = conn.getresponse()
            payload = resp.read()
            retry_after = parse_retry_after(resp.getheader("Retry-After"), self._wall_clock())
            status = resp.status
            if resp.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as exc:
            # A dropped keep-alive connection looks like this too; the next call reconnects.
            self.close()
            return WriteResponse(status=0, text=f"{type(exc).__name__}: {exc}")
        return WriteResponse(
            status=status,
            text="" if 200 <= status < 300 else error_text(payload),
            retry_after_seconds=retry_after,
        )


def http_writer(env: BenchEnv, bucket: str) -> WriteBatch:
    post = HttpWriter(url=env.url, org=env.org, bucket=bucket, token=env.token, timeout_seconds=60)

    def write(lines: Sequence[str]) -> None:
        response = post(encode_body(lines))
        if not response.ok:
            raise RuntimeError(f"http.client write failed: {response.status} {response.text}")

    return write


def client_service_writer(env: BenchEnv, bucket: str) -> WriteBatch:
    post = ClientWriter(
        url=env.url, org=env.org, bucket=bucket, token=env.token, timeout_seconds=60
    )

    def write(lines: Sequence[str]) -> None:
        response = post(encode_body(lines))
        if not response.ok:
            raise RuntimeError(f"influxdb-client write failed: {response.status} {response.text}")

    return write


def client_write_api_writer(env: BenchEnv, bucket: str) -> WriteBatch:
    client = InfluxDBClient(url=env.url, token=env.token, org=env.org, enable_gzip=True)
    api = client.write_api(write_options=SYNCHRONOUS)

    def write(lines: Sequence[str]) -> None:
        api.write(
            bucket=bucket,
            org=env.org,
            record=list(lines),
            write_precision=WritePrecision.NS,  # type: ignore[arg-type]
        )

    return write


WRITERS: dict[str, Callable[[BenchEnv, str], WriteBatch]] = {
    "http.client (HttpWriter)": http_writer,
    "influxdb-client service (ClientWriter)": client_service_writer,
    "influxdb-client write_api (gzip 9)": client_write_api_writer,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.writer", description=__doc__)
    parser.add_argument("--readings", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=5000, help="lines per write")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    progress = stderr_progress
    settings = load_settings()
    binary = ensure_influxd(settings.cache_dir, settings.influxdb_version, progress=progress)
    with bench_env(influxd_binary=binary, name="writer", progress=progress) as env:
        path = env.root / "workload.tsv"
        write_messages(
            path, generate(root="w", count=args.readings, devices=1000, now=int(time.time()))
        )
        lines = line_protocol(path, root="w", received_ns=time.time_ns())
        batches = [lines[i : i + args.batch] for i in range(0, len(lines), args.batch)]
        progress(f"writer: {len(lines):,} lines in {len(batches)} batches of {args.batch}")
        writers = {
            name: make(env, env.create_bucket(f"writer-{i}"))
            for i, (name, make) in enumerate(WRITERS.items())
        }
        wall: dict[str, list[float]] = {name: [] for name in writers}
        cpu: dict[str, list[float]] = {name: [] for name in writers}
        names = list(writers)
        for rep in range(args.reps):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                started, cpu_started = time.perf_counter(), time.process_time()
                for batch in batches:
                    writers[name](batch)
                wall[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - cpu_started)
                progress(f"writer: rep {rep + 1} {name}: {wall[name][-1]:.2f} s")
    base = statistics.median(wall[names[0]])
    print(f"{len(lines):,} lines, {len(batches)} batches of {args.batch}, median of {args.reps}")
    print("| writer | wall s | lines/s | client CPU ms/batch | wall vs http.client |")
    print("|---|---|---|---|---|")
    for name in names:
        seconds = statistics.median(wall[name])
        cpu_ms = statistics.median(cpu[name]) * 1000 / len(batches)
        print(
            f"| {name} | {seconds:.2f} | {len(lines) / seconds:,.0f} | {cpu_ms:.1f} "
            f"| {seconds / base:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
