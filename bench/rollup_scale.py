"""bench room: the rollup service at fleet scale, and the Flux task it replaced on the same data.

`python -m bench.rollup_scale [--devices 10000] [--minutes 5] [--interval-s 10]` starts its
own influxd (cached binary, temp dir, loopback), writes `--devices` devices x 10 metrics (nine
floats and a boolean) for the last `--minutes` closed minutes plus one late hour (stamped 3 h
to 2 h ago, one reading a minute, with the ingest's dirty markers) straight to /api/v2/write
(gzip batches, two writers: the database ceiling's writer), then measures with influxd's peak
RSS reset before each step (/proc/<pid>/clear_refs):
- `run_1m`: one frontier run: the newest closed minute of every device, at the 1m level;
- `window_new` and `window_old`: the same closed minutes (what the old task re-read on each
  run) by the service and by the old task's Flux (bench/flux/legacy_rollup_1m.flux, run as a
  query with a timeout and an RSS cap: past the cap influxd is killed and the figure is a
  lower bound);
- `backfill_late_hour`: the dirty-hour pass for the late hour of every device (its 60
  minutes and the hour).
Results go to bench/results/rollups.json. Touches: its own influxd and temp dir, loopback.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from influxdb_client.client.influxdb_client import InfluxDBClient

from edgewatch.models import Reading, Telemetry
from edgewatch.schema import ROLLUP_HOUR_NS, ROLLUP_MINUTE_NS, rollup_dirty_lines
from edgewatch.settings import load_settings
from rollup.plan import LEVEL_1M, as_datetime
from rollup.service import RollupService, RollupStore, RunReport
from stack.ephemeral import InfluxFixture, cached_influxd, running_influxdb, settings_for

NS = 1_000_000_000
FLOAT_METRICS = tuple(f"m{i}" for i in range(9))
BATCH_LINES = 5000
WRITERS = 2
LEGACY_FLUX = Path(__file__).with_name("flux") / "legacy_rollup_1m.flux"
RESULTS = Path(__file__).with_name("results") / "rollups.json"
KIB = 1024


def say(message: str) -> None:
    print(f"[rollup bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------- influxd memory


def reset_peak_rss(pid: int) -> None:
    """Reset VmHWM so the next reading is the peak of one step (Linux >= 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def rss_bytes(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * KIB
    return 0


class RssWatch:
    """Samples influxd's RSS; kills it past `cap_bytes` (the old task's OOM, made safe)."""

    def __init__(self, pid: int, cap_bytes: int, kill: Callable[[], None]) -> None:
        self.pid, self.cap, self._kill = pid, cap_bytes, kill
        self.capped = False
        self.max_seen_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                current = rss_bytes(self.pid, "VmRSS")
            except OSError:
                return
            self.max_seen_bytes = max(self.max_seen_bytes, current)
            if current > self.cap:
                self.capped = True
                self._kill()
                return

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------- writing


def reading_lines(devices: int, start_ns: int, stop_ns: int, step_ns: int) -> Iterator[str]:
    for ts in range(start_ns, stop_ns, step_ns):
        for d in range(devices):
            values = ",".join(
                f"{m}={(d * 7 + ts // NS + i) % 97 + 0.5}" for i, m in enumerate(FLOAT_METRICS)
            )
            ok = "true" if (d + ts // NS) % 5 else "false"
            # Spread over the step so points of one device never share a timestamp.
            tags = f"device=dev{d:05d},site=site{d % 100:03d}"
            yield f"telemetry,{tags} {values},camera_ok={ok} {ts + d * 1000}"


def write_all(fx: InfluxFixture, lines: Iterator[str]) -> tuple[int, float]:  # noqa: C901 - writer threads, queue and error path read best in one place
    """Gzip batches through two writers; (lines, seconds)."""
    work: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
    errors: list[str] = []
    parts = urlsplit(fx.url)

    def writer() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=300)
        path = f"/api/v2/write?org={fx.org}&bucket={fx.bucket}&precision=ns"
        headers = {"Authorization": f"Token {fx.admin_token}", "Content-Encoding": "gzip"}
        while (body := work.get()) is not None:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read()
            if resp.status != 204:
                errors.append(f"write answered {resp.status}: {text[:200]!r}")
        conn.close()

    threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
    for t in threads:
        t.start()
    started, count, batch = time.monotonic(), 0, []
    for line in lines:
        batch.append(line)
        if len(batch) == BATCH_LINES:
            work.put(gzip.compress("\n".join(batch).encode(), 1))
            count += len(batch)
            batch = []
    if batch:
        work.put(gzip.compress("\n".join(batch).encode(), 1))
        count += len(batch)
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("; ".join(errors[:3]))
    return count, time.monotonic() - started


# ------------------------------------------------------------------------- measuring


def measure(fx: InfluxFixture, name: str, step: Callable[[], Any]) -> dict[str, Any]:
    pid = fx.process.pid
    assert pid is not None
    reset_peak_rss(pid)
    before = rss_bytes(pid, "VmRSS")
    started = time.monotonic()
    outcome = step()
    seconds = time.monotonic() - started
    peak = rss_bytes(pid, "VmHWM")
    say(f"{name}: {seconds:.2f} s, influxd peak RSS {peak / 2**20:,.0f} MiB")
    return {
        "seconds": round(seconds, 3),
        "influxd_rss_before_mib": round(before / 2**20),
        "influxd_peak_rss_mib": round(peak / 2**20),
        "outcome": outcome,
    }


def legacy_query(fx: InfluxFixture) -> str:
    """The old 1-minute task's Flux as a plain query (its `option task` line dropped)."""
    text = LEGACY_FLUX.read_text().replace("${raw_bucket}", fx.bucket)
    text = text.replace("${bucket_1m}", fx.bucket_1m)
    return "\n".join(line for line in text.splitlines() if not line.startswith("option task"))


def run(args: argparse.Namespace) -> dict[str, Any]:  # noqa: PLR0915 - the benchmark script, step by step
    results: dict[str, Any] = {
        "devices": args.devices,
        "metrics": 10,
        "interval_s": args.interval_s,
    }
    with running_influxdb(cached_influxd(load_settings())) as fx:
        settings = settings_for(
            None, fx, rollup_devices_per_query=args.devices_per_query, rollup_timeout_seconds=900.0
        )
        now = time.time_ns()
        live_stop = now // ROLLUP_MINUTE_NS * ROLLUP_MINUTE_NS
        live_start = live_stop - args.minutes * ROLLUP_MINUTE_NS
        say(
            f"writing {args.devices:,} devices x 10 metrics for {args.minutes} min "
            f"every {args.interval_s} s"
        )
        lines, seconds = write_all(
            fx, reading_lines(args.devices, live_start, live_stop, args.interval_s * NS)
        )
        results["write_live"] = {"lines": lines, "fields": lines * 10, "seconds": round(seconds, 1)}
        late_hour = now // ROLLUP_HOUR_NS * ROLLUP_HOUR_NS - 3 * ROLLUP_HOUR_NS
        say(f"writing the late hour {as_datetime(late_hour).isoformat()} at one reading a minute")
        markers = []
        for d in range(args.devices):
            message = Telemetry(
                site=f"site{d % 100:03d}",
                device=f"dev{d:05d}",
                readings=(Reading(ts_ns=late_hour, metrics={"m0": 1.0}),),
            )
            markers += rollup_dirty_lines(message, received_ns=now)

        def late() -> Iterator[str]:
            yield from reading_lines(
                args.devices, late_hour, late_hour + ROLLUP_HOUR_NS, ROLLUP_MINUTE_NS
            )
            yield from markers

        lines, seconds = write_all(fx, late())
        results["write_late_hour"] = {"lines": lines, "seconds": round(seconds, 1)}

        with InfluxDBClient(
            url=fx.url, token=fx.rollup_token, org=fx.org, timeout=900_000
        ) as client:
            store = RollupStore(client=client, settings=settings)
            cleanup = store.close
            service = RollupService(store=store, settings=settings)
            devices = store.devices(live_start, live_stop)
            say(f"{len(devices):,} devices found")

            def one_minute() -> dict[str, int]:
                report = RunReport()
                service.aggregate(
                    LEVEL_1M, live_stop - ROLLUP_MINUTE_NS, live_stop, devices, report
                )
                return {"queries": report.queries}

            results["run_1m"] = measure(fx, "one frontier run (1 minute, all devices)", one_minute)

            def window_new() -> dict[str, int]:
                report = RunReport()
                service.aggregate(LEVEL_1M, live_start, live_stop, devices, report)
                return {"queries": report.queries}

            results["window_new"] = measure(
                fx, f"the {args.minutes} closed minutes, rollup service", window_new
            )

            def backfill() -> dict[str, int]:
                report = RunReport()
                progress = {LEVEL_1M: live_stop, "1h": live_stop // ROLLUP_HOUR_NS * ROLLUP_HOUR_NS}
                service.backfill_dirty(time.time_ns(), progress, report)
                return {"queries": report.queries, "dirty_hours": report.dirty_hours}

            results["backfill_late_hour"] = measure(
                fx, "backfill of the late hour (all devices, 1m + 1h)", backfill
            )
            cleanup()

        if args.skip_legacy:
            return results
        cap = args.legacy_rss_cap_gib * 2**30
        pid = fx.process.pid
        assert pid is not None
        say(
            f"the old task's Flux on the same minutes (timeout {args.legacy_timeout_s:.0f} s, "
            f"RSS cap {args.legacy_rss_cap_gib} GiB)"
        )
        outcome: dict[str, Any] = {}
        with RssWatch(pid, cap, fx.process.kill) as watch:

            def legacy() -> str:
                try:
                    with InfluxDBClient(
                        url=fx.url,
                        token=fx.admin_token,
                        org=fx.org,
                        timeout=int(args.legacy_timeout_s * 1000),
                    ) as client:
                        client.query_api().query(legacy_query(fx), org=fx.org)
                except Exception as exc:
                    return f"did not finish: {type(exc).__name__}: {str(exc)[:200]}"
                return "finished"

            outcome = measure(fx, "the same minutes, old Flux task", legacy)
        outcome["rss_capped"] = watch.capped
        if watch.capped:
            # influxd was killed at the cap: its peak is at least what the watch last saw.
            outcome["influxd_peak_rss_mib"] = round(watch.max_seen_bytes / 2**20)
        results["window_old"] = outcome
        new_s = results["window_new"]["seconds"]
        results["ratio_old_vs_new_seconds"] = round(outcome["seconds"] / new_s, 1)
        results["ratio_old_vs_new_peak_rss"] = round(
            outcome["influxd_peak_rss_mib"] / max(1, results["window_new"]["influxd_peak_rss_mib"]),
            1,
        )
        results["legacy_lower_bound"] = outcome["outcome"] != "finished"
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rollup_scale", description=__doc__)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--minutes", type=int, default=5, help="closed minutes of live data (<= 9)")
    parser.add_argument(
        "--interval-s", type=int, default=10, help="reading period of the live data"
    )
    parser.add_argument("--devices-per-query", type=int, default=500)
    parser.add_argument("--skip-legacy", action="store_true", help="do not run the old task's Flux")
    parser.add_argument("--legacy-timeout-s", type=float, default=300.0)
    parser.add_argument("--legacy-rss-cap-gib", type=float, default=6.0)
    args = parser.parse_args(argv)
    if not 1 <= args.minutes <= 9:
        parser.error("--minutes must be 1 to 9 (the old task re-read the last 10 minutes)")
    results = run(args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
