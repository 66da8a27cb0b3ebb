"""bench room: the Models page's reads for 1,000 devices over 30 days.

Seeds a fresh influxd (stack.ephemeral) straight as line protocol: 30 days of 1-hour rollups
(stat mean, the series the page reads) of inference_ms, fps, detections and model_confidence
for `--devices` cameras, their births in the state bucket (a rollout of a second version to
half of them mid-range, so the page splits windows by version), some alert events, and each
device's last-seen. Then times, `--reps` times after one untimed warm-up, the median of:

- `read_models`: the page's six queries for the 30-day preset (what `load_models` runs);
- `frames`: the pure work on their rows (versions, per-version figures, the comparison,
  drift of every device, integrity, rollouts);
- the peer, measured in the same run on the same devices: the fleet overview
  (`FleetStore.fleet`), the dashboard's other page that reads every device.

Prints JSON and writes bench/results/models_queries.json. Touches: its own temp influxd.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision

from bench.queries import SEED_WRITER
from edgewatch.models import AlertEvent, Reading, StatusEvent, Telemetry
from edgewatch.schema import state_lines as schema_state_lines
from edgewatch.settings import load_settings
from stack.ephemeral import InfluxFixture, cached_influxd, running_influxdb

RESULTS = Path(__file__).parent / "results" / "models_queries.json"
NS = 1_000_000_000
HOUR_S = 3600
BATCH_LINES = 20_000
SHA_OLD = "a" * 64
SHA_NEW = "b" * 64


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _tags(d: int) -> str:
    return f"device=cam-{d:04d},site=site-{d % 50:02d}"


def rollup_lines(devices: int, start_s: int, stop_s: int) -> Iterator[str]:
    """Hourly means; the second version (devices moved at mid-range) is slower."""
    middle = (start_s + stop_s) // 2
    for t in range(start_s, stop_s, HOUR_S):
        day = math.sin(2 * math.pi * (t % 86400) / 86400)
        for d in range(devices):
            slow = 1.8 if d % 2 == 0 and t >= middle else 1.0
            ms = (24.0 + 6.0 * day + d % 5) * slow
            conf = 0.86 - (0.3 if d == 7 and t >= stop_s - 5 * 86400 else 0.0)
            fps = min(30.0, 1000.0 / ms)
            yield (
                f"telemetry,{_tags(d)},stat=mean inference_ms={ms:.2f},fps={fps:.2f},"
                f"detections={8 + 6 * day:.2f},model_confidence={conf + 0.01 * day:.3f} {t * NS}"
            )


def state_lines(devices: int, start_s: int, stop_s: int) -> Iterator[str]:
    """Births (half the fleet moved to the new version at mid-range), last-seen and the
    shadow as the ingest writes them (edgewatch.schema.state_lines), and a few alerts."""
    middle = (start_s + stop_s) // 2
    for d in range(devices):
        site, name = f"site-{d % 50:02d}", f"cam-{d:04d}"
        births = [(start_s + d % 600, "1.4.2", SHA_OLD)]
        if d % 2 == 0:
            births.append((middle + d % 600, "1.5.0", SHA_NEW))
        for at, version, sha in births:
            birth = StatusEvent(
                site=site, device=name, ts_ns=at * NS, state="online", interval_s=10.0,
                model="yolo-v8n", model_version=version, model_sha256=sha,
                labels=(("ring", "canary" if d < 20 else "stable"),),
            )  # fmt: skip
            yield from schema_state_lines(birth, at * NS, writer=SEED_WRITER)
        last = (stop_s - 30 - d % 10) * NS
        reading = Telemetry(site=site, device=name, readings=(Reading(last, {"x": 1.0}),))
        yield from schema_state_lines(reading, last, writer=SEED_WRITER)
        if d % 10 == 0:
            at = (start_s + 86400 + d * 60) * NS
            alert = AlertEvent(
                site=site, device=name, ts_ns=at, type="overheat", severity="critical"
            )
            yield from schema_state_lines(alert, at, writer=SEED_WRITER)


def write(fx: InfluxFixture, bucket: str, lines: Iterator[str]) -> int:
    written = 0
    with (
        InfluxDBClient(url=fx.url, token=fx.admin_token, org=fx.org, timeout=300_000) as client,
        client.write_api(write_options=SYNCHRONOUS) as writer,
    ):
        batch: list[str] = []
        for text in lines:
            batch.append(text)
            if len(batch) >= BATCH_LINES:
                writer.write(bucket=bucket, org=fx.org, record=batch,
                             write_precision=WritePrecision.NS)  # fmt: skip
                written += len(batch)
                batch = []
        if batch:
            writer.write(bucket=bucket, org=fx.org, record=batch, write_precision=WritePrecision.NS)
            written += len(batch)
    return written


def timed(reps: int, call: Callable[[], Any]) -> tuple[dict[str, float], Any]:
    result = call()  # warm-up, untimed
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - t0) * 1000.0)
    return {"median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
            "max_ms": round(max(times), 1), "reps": reps}, result  # fmt: skip


def run(devices: int, days: int, reps: int) -> dict[str, Any]:
    # Imported here: the dashboard's store and frames pull in pandas and Plotly (not Streamlit).
    from dashboard import model_store, model_view  # noqa: PLC0415
    from dashboard.frames import Connection  # noqa: PLC0415
    from dashboard.ranges import preset_range  # noqa: PLC0415
    from dashboard.store import FleetStore  # noqa: PLC0415

    now = datetime.now(tz=UTC).replace(microsecond=0)
    stop_s = int(now.timestamp()) // HOUR_S * HOUR_S
    start_s = stop_s - days * 86400
    out: dict[str, Any] = {"devices": devices, "days": days}
    with running_influxdb(cached_influxd(load_settings())) as fx:
        t0 = time.monotonic()
        out["seeded_lines"] = {
            "rollup_1h": write(fx, fx.bucket_1h, rollup_lines(devices, start_s, stop_s)),
            "state": write(fx, fx.bucket_state, state_lines(devices, start_s, stop_s)),
        }
        out["seed_seconds"] = round(time.monotonic() - t0, 1)
        say(f"seeded {out['seeded_lines']} in {out['seed_seconds']} s")
        connection = Connection(
            url=fx.url, org=fx.org, token=fx.admin_token, bucket=fx.bucket,
            bucket_1m=fx.bucket_1m, bucket_1h=fx.bucket_1h, bucket_ops=fx.bucket_ops,
            bucket_state=fx.bucket_state, timeout_s=300.0, ingest_interval_s=5.0,
        )  # fmt: skip
        client = InfluxDBClient(url=fx.url, token=fx.admin_token, org=fx.org, timeout=300_000)
        try:
            store = FleetStore(client=client, connection=connection)
            time_range = preset_range("30 d", now)
            read_stats, data = timed(reps, lambda: model_store.read_models(store, time_range, now))
            say(f"read_models: {read_stats}")
            # Each query alone: which of the six costs what (same reps, same data).
            per_query: dict[str, list[float]] = {}
            plain_query = store.query

            def query_timed(name: str, params: Any, **kw: Any) -> list[dict[str, Any]]:
                t0 = time.perf_counter()
                rows = plain_query(name, params, **kw)
                per_query.setdefault(name, []).append((time.perf_counter() - t0) * 1000.0)
                return rows

            store.query = query_timed  # type: ignore[method-assign]
            for _ in range(reps):
                model_store.read_models(store, time_range, now)
            store.query = plain_query  # type: ignore[method-assign]
            out["per_query_median_ms"] = {
                name: round(statistics.median(times), 1) for name, times in per_query.items()
            }
            say(f"per query: {out['per_query_median_ms']}")

            def frames() -> tuple[int, int, int]:
                devs = model_view.inventory(data.history, data.ops)
                keys = {(d.site, d.device) for d in devs}
                windows = model_view.window_frame(data.metric_rows, data.history, keys)
                values = model_view.device_values(windows)
                model_view.performance_frame(
                    values, data.alert_counts, model_store.span_days(time_range)
                )
                model_view.compare_versions(values, "yolo-v8n 1.5.0", "yolo-v8n 1.4.2")
                drift = model_view.drift_results(data.confidence_rows, keys)
                flags = model_view.flags_for(devs, data.ops)
                model_view.rollout_changes(data.history)
                return len(devs), sum(r.drifting for r in drift), len(flags)

            frame_stats, (shown, drifting, flagged) = timed(reps, frames)
            say(f"frames: {frame_stats}")
            fleet_stats, view = timed(reps, lambda: store.fleet(time.time_ns()))
            say(f"fleet overview (peer): {fleet_stats}")
        finally:
            client.close()  # type: ignore[no-untyped-call]
    page_ms = read_stats["median_ms"] + frame_stats["median_ms"]
    out.update(
        read_models=read_stats,
        rows={"metric_windows": len(data.metric_rows), "confidence_windows":
              len(data.confidence_rows), "status_history": len(data.history)},
        plans={"metrics": data.metric_plan.label, "drift": data.drift_plan.label},
        frames=frame_stats,
        devices_shown=shown,
        drifting=drifting,
        flagged=flagged,
        fleet_overview_peer=fleet_stats,
        fleet_devices=len(view.health),
        page_over_fleet_overview=round(page_ms / fleet_stats["median_ms"], 2),
    )  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.models_queries", description=__doc__)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    results = run(args.devices, args.days, args.reps)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
