"""bench room: the dashboard's own queries against a seeded fleet.

Seeds, straight as line protocol: `rollup_days` of 1-minute rollups (stat mean/min/max of a
few metrics) and 90 days of 1-hour rollups for the trend devices, `raw_hours` of raw readings
for them, and the last status and telemetry of every device of the fleet. Then times the
dashboard's `FleetStore.series` (trends of 10 devices over 24 h, 7 d, 30 d and 90 d, from each
source that holds the range) and `FleetStore.fleet` (the fleet overview), `reps` times each
after one untimed warm-up. Touches: the bench's InfluxDB.
"""

from __future__ import annotations

import gzip
import http.client
import math
import queue
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from bench.harness import BenchEnv, Progress
from bench.runner import percentile
from bench.workload import device_name
from edgewatch.models import Reading, StatusEvent, Telemetry
from edgewatch.schema import state_lines

SEED_BATCH_LINES = 10_000
SEED_WRITERS = 2
SEED_QUEUE_BATCHES = 8
ROLLUP_METRICS: tuple[str, ...] = ("cpu_temp_c", "inference_ms", "fps")
ROLLUP_1H_DAYS = 90
TREND_DEVICES = 10
TREND_METRIC = "cpu_temp_c"
PROGRESS_INTERVAL_SECONDS = 5.0
NS = 1_000_000_000
# A query slower than this is timed once (its first run) instead of `reps` times, and one
# slower than the timeout is reported as such: the bench must end in bounded time.
SLOW_QUERY_BUDGET_MS = 5000.0
QUERY_TIMEOUT_MS = 60_000
FLEET_SCALE_DEVICES: tuple[int, ...] = (1000, 10_000)


@dataclass(frozen=True, slots=True)
class QueryPlanConfig:
    trend_devices_seeded: int  # devices with raw data and rollups
    fleet_devices: int  # devices with a status and a last reading (includes the above)
    rollup_days: int
    raw_hours: int
    raw_interval_seconds: int
    reps: int


def _value(device: int, metric: int, t_minutes: float) -> float:
    """A smooth daily curve per device and metric: what a rollup of real data looks like."""
    base = (55.0, 24.0, 22.0)[metric] + (device % 7)
    amplitude = (12.0, 6.0, 5.0)[metric]
    return base + amplitude * math.sin(2 * math.pi * (t_minutes / 1440.0) + device * 0.37)


# Seeded state is written as the default ingest instance would write it.
SEED_WRITER = "ingest-1"
STATE_LINES_PER_DEVICE = 4


def _tags(device: int) -> str:
    site, name = device_name(device)
    return f"device={name},site={site}"


def rollup_lines(devices: int, start_s: int, stop_s: int, step_s: int) -> Iterator[str]:
    """`telemetry` rollup points (stat mean/min/max) every `step_s` in [start_s, stop_s)."""
    tags = [_tags(d) for d in range(devices)]
    spread = (2.5, 4.0, 3.0)
    for t in range(start_s, stop_s, step_s):
        minutes = t / 60.0
        ts = t * NS
        for d in range(devices):
            values = [_value(d, m, minutes) for m in range(len(ROLLUP_METRICS))]
            means = ",".join(f"{n}={v:.2f}" for n, v in zip(ROLLUP_METRICS, values, strict=True))
            mins = ",".join(
                f"{n}={v - s:.2f}" for n, v, s in zip(ROLLUP_METRICS, values, spread, strict=True)
            )
            maxes = ",".join(
                f"{n}={v + s:.2f}" for n, v, s in zip(ROLLUP_METRICS, values, spread, strict=True)
            )
            yield f"telemetry,{tags[d]},stat=mean {means} {ts}"
            yield f"telemetry,{tags[d]},stat=min {mins} {ts}"
            yield f"telemetry,{tags[d]},stat=max {maxes} {ts}"


def raw_lines(devices: int, start_s: int, stop_s: int, step_s: int) -> Iterator[str]:
    """Raw `telemetry` readings of the rollup metrics plus a boolean, every `step_s`."""
    tags = [_tags(d) for d in range(devices)]
    for t in range(start_s, stop_s, step_s):
        minutes = t / 60.0
        ts = t * NS
        for d in range(devices):
            fields = ",".join(
                f"{n}={_value(d, m, minutes) + ((t // step_s + d) % 5 - 2) * 0.5:.2f}"
                for m, n in enumerate(ROLLUP_METRICS)
            )
            yield f"telemetry,{tags[d]} {fields},camera_ok=true {ts}"


def fleet_lines(devices: int, now_s: int) -> Iterator[str]:
    """Every device's birth status and its last three readings; the ingest's heartbeat."""
    for d in range(devices):
        tags = _tags(d)
        yield (
            f'device_status,{tags} state="online",interval_s=10.0,model="yolo-v8n",'
            f'model_version="1.4.2",firmware="2.1.0",lat={48 + d % 10 * 0.01:.2f},'
            f"lon={11 + d % 10 * 0.01:.2f} {(now_s - 3600 - d % 60) * NS}"
        )
        for k in range(3):
            ts = (now_s - 30 + k * 10 - d % 10) * NS
            fields = ",".join(
                f"{n}={_value(d, m, ts / NS / 60):.2f}" for m, n in enumerate(ROLLUP_METRICS)
            )
            yield f"telemetry,{tags} {fields},camera_ok=true {ts}"
    for k in range(12):
        ts = (now_s - 60 + k * 5) * NS
        yield f"ingest_stats,instance=ingest-1 received={k * 100}i,interval_s=5.0 {ts}"


def fleet_state_lines(devices: int, now_s: int, first: int = 0) -> Iterator[str]:
    """The state bucket's side of `fleet_lines`, as the ingest writes it
    (edgewatch.schema.state_lines): each birth at its receipt time, and each device's newest
    reading (its last-seen point of the current hour and its shadow), for devices `first` to
    `devices - 1`: `STATE_LINES_PER_DEVICE` lines a device."""
    for d in range(first, devices):
        site, name = device_name(d)
        born = (now_s - 3600 - d % 60) * NS
        birth = StatusEvent(
            site=site, device=name, ts_ns=born, state="online", interval_s=10.0,
            model="yolo-v8n", model_version="1.4.2", firmware="2.1.0",
            lat=round(48 + d % 10 * 0.01, 2), lon=round(11 + d % 10 * 0.01, 2),
        )  # fmt: skip
        yield from state_lines(birth, born, writer=SEED_WRITER)
        newest = (now_s - 30 + 2 * 10 - d % 10) * NS
        reading = Telemetry(site=site, device=name, readings=(Reading(newest, {"x": 1.0}),))
        yield from state_lines(reading, newest, writer=SEED_WRITER)


class Seeder:
    """Line protocol -> gzip batches -> `SEED_WRITERS` writers, with progress on stderr."""

    def __init__(self, env: BenchEnv, progress: Progress) -> None:
        self._env = env
        self._progress = progress

    def _writer(self, bucket: str, work: queue.Queue[bytes | None], errors: list[str]) -> None:
        parts = urlsplit(self._env.url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=300)
        path = f"/api/v2/write?org={self._env.org}&bucket={bucket}&precision=ns"
        headers = {"Authorization": f"Token {self._env.token}", "Content-Encoding": "gzip"}
        try:
            while (body := work.get()) is not None:
                if errors:
                    continue  # drain so the producer never blocks
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                text = resp.read()
                if resp.status != 204:
                    errors.append(f"seeding {bucket}: {resp.status} {text[:200]!r}")
        finally:
            conn.close()

    def seed(self, bucket: str, lines: Iterator[str], *, label: str, total: int) -> int:
        work: queue.Queue[bytes | None] = queue.Queue(SEED_QUEUE_BATCHES)
        errors: list[str] = []
        writers = [
            threading.Thread(target=self._writer, args=(bucket, work, errors), daemon=True)
            for _ in range(SEED_WRITERS)
        ]
        for w in writers:
            w.start()
        written = 0
        started = time.monotonic()
        next_report = started + PROGRESS_INTERVAL_SECONDS
        batch: list[str] = []
        try:
            for line in lines:
                batch.append(line)
                if len(batch) >= SEED_BATCH_LINES:
                    work.put(gzip.compress("\n".join(batch).encode(), 1))
                    written += len(batch)
                    batch = []
                    if time.monotonic() >= next_report:
                        rate = written / (time.monotonic() - started)
                        self._progress(
                            f"seeding {label}: {written:,}/{total:,} lines ({rate:,.0f} lines/s)"
                        )
                        next_report += PROGRESS_INTERVAL_SECONDS
                if errors:
                    break
            if batch and not errors:
                work.put(gzip.compress("\n".join(batch).encode(), 1))
                written += len(batch)
        finally:
            for _ in writers:
                work.put(None)
            for w in writers:
                w.join()
        if errors:
            raise RuntimeError(errors[0])
        self._progress(f"seeded {label}: {written:,} lines in {time.monotonic() - started:.1f} s")
        return written


def seed_all(
    env: BenchEnv, cfg: QueryPlanConfig, now: datetime, progress: Progress
) -> dict[str, Any]:
    now_s = int(now.timestamp())
    hour_s = now_s - now_s % 3600
    minute_s = now_s - now_s % 60
    seeder = Seeder(env, progress)
    n = cfg.trend_devices_seeded
    counts: dict[str, int] = {}
    started = time.monotonic()
    m1_start = minute_s - cfg.rollup_days * 86400
    counts["rollup_1m"] = seeder.seed(
        env.buckets.m1,
        rollup_lines(n, m1_start, minute_s, 60),
        label=f"1-minute rollups ({cfg.rollup_days} d x {n} devices)",
        total=(minute_s - m1_start) // 60 * n * 3,
    )
    h1_start = hour_s - ROLLUP_1H_DAYS * 86400
    counts["rollup_1h"] = seeder.seed(
        env.buckets.h1,
        rollup_lines(n, h1_start, hour_s, 3600),
        label=f"1-hour rollups ({ROLLUP_1H_DAYS} d x {n} devices)",
        total=ROLLUP_1H_DAYS * 24 * n * 3,
    )
    raw_start = now_s - cfg.raw_hours * 3600
    counts["raw"] = seeder.seed(
        env.buckets.raw,
        raw_lines(n, raw_start, now_s - 60, cfg.raw_interval_seconds),
        label=f"raw readings ({cfg.raw_hours} h every {cfg.raw_interval_seconds} s x {n} devices)",
        total=(cfg.raw_hours * 3600 - 60) // cfg.raw_interval_seconds * n,
    )
    counts["fleet"] = seeder.seed(
        env.buckets.raw,
        fleet_lines(cfg.fleet_devices, now_s),
        label=f"fleet status and last readings ({cfg.fleet_devices} devices)",
        total=cfg.fleet_devices * 4 + 12,
    )
    counts["fleet_state"] = seeder.seed(
        env.buckets.state,
        fleet_state_lines(cfg.fleet_devices, now_s),
        label=f"fleet state ({cfg.fleet_devices} devices)",
        total=cfg.fleet_devices * STATE_LINES_PER_DEVICE,
    )
    return {"lines": counts, "seconds": time.monotonic() - started}


def _timed(reps: int, call: Any) -> tuple[list[float], Any]:
    """`reps` timings after an untimed warm-up; a query slower than the budget is run once."""
    t0 = time.perf_counter()
    result = call()
    warm_ms = (time.perf_counter() - t0) * 1000.0
    if warm_ms > SLOW_QUERY_BUDGET_MS:
        return [warm_ms], result
    times: list[float] = []
    for _ in range(reps):
        t0 = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times, result


def _summary(times: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(times),
        "p95_ms": percentile(times, 95),
        "min_ms": min(times),
        "max_ms": max(times),
    }


def fleet_store(env: BenchEnv, *, timeout_s: float) -> tuple[Any, Any]:
    """(FleetStore, its InfluxDBClient to close) as the dashboard builds them, for `env`.

    Bench reaches into the dashboard's store and pure frames only, never its Streamlit cache
    layer (the import contract names these imports).
    """
    from influxdb_client.client.influxdb_client import InfluxDBClient  # noqa: PLC0415

    from dashboard.frames import Connection  # noqa: PLC0415
    from dashboard.store import FleetStore  # noqa: PLC0415

    connection = Connection(
        url=env.url, org=env.org, token=env.token, bucket=env.buckets.raw,
        bucket_1m=env.buckets.m1, bucket_1h=env.buckets.h1, bucket_ops=env.buckets.ops,
        bucket_state=env.buckets.state, timeout_s=timeout_s, ingest_interval_s=5.0,
    )  # fmt: skip
    client = InfluxDBClient(
        url=env.url, token=env.token, org=env.org, timeout=int(timeout_s * 1000)
    )
    return FleetStore(client=client, connection=connection), client


def fleet_scale(
    env: BenchEnv, store: Any, now: datetime, cfg: QueryPlanConfig, progress: Progress
) -> dict[int, dict[str, Any]]:
    """The fleet overview through `FleetStore.fleet` at each size of `FLEET_SCALE_DEVICES`.

    The state bucket is grown to each size in turn (the devices seeded by `seed_all` count);
    the first call after growing is the cold one (no call of the dashboard's cache, influxd's
    caches not yet holding the new series), then `reps` more give the median.
    """
    now_s = int(now.timestamp())
    now_ns = now_s * NS
    seeder = Seeder(env, progress)
    have = cfg.fleet_devices
    out: dict[int, dict[str, Any]] = {}
    for size in FLEET_SCALE_DEVICES:
        if size > have:
            seeder.seed(
                env.buckets.state,
                fleet_state_lines(size, now_s, first=have),
                label=f"fleet state devices {have:,}..{size - 1:,}",
                total=(size - have) * STATE_LINES_PER_DEVICE,
            )
            have = size
        progress(f"query: fleet overview of {size:,} devices (state bucket)")
        t0 = time.perf_counter()
        view = store.fleet(now_ns)
        cold_ms = (time.perf_counter() - t0) * 1000.0
        times, view = _timed(cfg.reps, lambda: store.fleet(now_ns))
        out[size] = {
            "devices": len(view.health),
            "expected_devices": max(size, cfg.fleet_devices),
            "cold_ms": cold_ms,
            "reps": len(times),
            **_summary(times),
        }
        progress(
            f"fleet overview {size:,} devices: cold {cold_ms:.0f} ms, median "
            f"{out[size]['median_ms']:.0f} ms"
        )
    return out


def run_query_bench(env: BenchEnv, cfg: QueryPlanConfig, progress: Progress) -> dict[str, Any]:
    # Imported here: the store pulls in pandas and influxdb-client.
    from influxdb_client.client.influxdb_client import InfluxDBClient  # noqa: PLC0415

    from dashboard.frames import Connection  # noqa: PLC0415
    from dashboard.ranges import (  # noqa: PLC0415
        PRESETS,
        QueryPlan,
        Source,
        choose_source,
        preset_range,
        window_for,
    )
    from dashboard.store import FleetStore  # noqa: PLC0415

    now = datetime.now(tz=UTC).replace(microsecond=0)
    seeding = seed_all(env, cfg, now, progress)
    connection = Connection(
        url=env.url,
        org=env.org,
        token=env.token,
        bucket=env.buckets.raw,
        bucket_1m=env.buckets.m1,
        bucket_1h=env.buckets.h1,
        bucket_ops=env.buckets.ops,
        bucket_state=env.buckets.state,
        timeout_s=120.0,
        ingest_interval_s=5.0,
    )
    client = InfluxDBClient(url=env.url, token=env.token, org=env.org, timeout=QUERY_TIMEOUT_MS)
    store = FleetStore(client=client, connection=connection)
    keys = [device_name(d) for d in range(TREND_DEVICES)]
    # Each range from the source the dashboard picks and from the neighbouring ones that
    # hold it (the 1-minute bucket only holds `rollup_days`, raw only `raw_hours`).
    matrix: list[tuple[str, Source]] = [
        ("24 h", Source.RAW), ("24 h", Source.ROLLUP_1M),
        ("7 d", Source.ROLLUP_1M), ("7 d", Source.ROLLUP_1H),
        ("30 d", Source.ROLLUP_1M), ("30 d", Source.ROLLUP_1H),
        ("90 d", Source.ROLLUP_1H),
    ]  # fmt: skip
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    try:
        for preset, source in matrix:
            span = PRESETS[preset]
            if source == Source.ROLLUP_1M and span > timedelta(days=cfg.rollup_days):
                continue
            if source == Source.RAW and span > timedelta(hours=cfg.raw_hours):
                continue
            time_range = preset_range(preset, now)
            plan = QueryPlan(source=source, window_seconds=window_for(span, source))
            progress(f"query: trends of {len(keys)} devices over {preset} from {source.value}")
            try:
                times, frame = _timed(
                    cfg.reps, lambda tr=time_range, p=plan: store.series(keys, TREND_METRIC, tr, p)
                )
            except RuntimeError as exc:  # the store's StoreUnavailableError, timeouts included
                progress(f"query FAILED: {exc}")
                failures.append(f"trends {preset} from {source.value}: {exc}")
                continue
            results.append(
                {
                    "query": "trends",
                    "range": preset,
                    "source": str(source.value),
                    "dashboard_default": choose_source(span) == source,
                    "devices": len(keys),
                    "window_s": plan.window_seconds,
                    "rows": len(frame),
                    "reps": len(times),
                    **_summary(times),
                }
            )
        progress(f"query: fleet overview of {cfg.fleet_devices} devices")
        now_ns = int(now.timestamp()) * NS
        times, view = _timed(cfg.reps, lambda: store.fleet(now_ns))
        results.append(
            {
                "query": "fleet_overview",
                "range": "30 d lookback",
                "source": "state",
                "dashboard_default": True,
                "devices": len(view.health),
                "expected_devices": cfg.fleet_devices,
                "rows": len(view.health),
                "reps": len(times),
                **_summary(times),
            }
        )
        scale = fleet_scale(env, store, now, cfg, progress)
    finally:
        client.close()  # type: ignore[no-untyped-call]
    return {
        **{f"fleet_{n}_ms": row["median_ms"] for n, row in scale.items()},
        "fleet_scale": scale,
        "ok": not failures,
        "error": "; ".join(failures) or None,
        "code": "dashboard.store.FleetStore (series, fleet)",
        "config": {
            "trend_devices_seeded": cfg.trend_devices_seeded,
            "fleet_devices": cfg.fleet_devices,
            "rollup_1m_days": cfg.rollup_days,
            "rollup_1h_days": ROLLUP_1H_DAYS,
            "raw_hours": cfg.raw_hours,
            "raw_interval_s": cfg.raw_interval_seconds,
            "metrics": list(ROLLUP_METRICS),
            "reps": cfg.reps,
        },
        "seeding": seeding,
        "results": results,
    }
