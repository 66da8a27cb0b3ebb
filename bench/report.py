"""bench room: the results file, the table on stdout and BENCHMARKS.md.

Pure formatting apart from `machine()` and `versions()`, which read /proc and ask the binaries.
BENCHMARKS.md is regenerated from the results; text below the `NOTES_MARKER` line of an
existing file (the analysis written by people) is kept.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
NOTES_MARKER = "<!-- notes: kept when this file is regenerated -->"
SCENARIOS: tuple[str, ...] = ("edgewatch", "edgewatch_x2", "telegraf")

# The targets the project set itself (see the issue); each names where its figure comes from.
TARGET_TELEGRAF_RATIO = 1.0
TARGET_DB_RATIO = 0.8
TARGET_P99_MS = 1000.0
TARGET_RSS_MB = 300.0
TARGET_TRENDS_30D_MS = 300.0
TARGET_FLEET_MS = 500.0


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu_model": model,
        "kernel": platform.release(),
    }


def _first_line(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "unavailable"
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _package(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions(
    *, influxd: Path | None, telegraf: Path | None, telegraf_version: str
) -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "edgewatch": _package("edgewatch"),
        "paho-mqtt": _package("paho-mqtt"),
        "influxdb-client": _package("influxdb-client"),
        "influxd": _first_line([str(influxd), "version"]) if influxd else "n/a",
        "mosquitto": _first_line(["/usr/sbin/mosquitto", "-h"]),
        "telegraf": (
            f"{telegraf_version} (custom build: {_first_line([str(telegraf), '--version'])})"
            if telegraf
            else "n/a"
        ),
    }


def _rate(section: dict[str, Any] | None) -> float | None:
    if not section or not section.get("ok"):
        return None
    value = section.get("messages_per_s")
    return float(value) if value else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    scen = results.get("scenarios", {})
    ceil = results.get("ceilings", {})

    def rate(name: str) -> float | None:
        return _rate(scen.get(name, {}).get("throughput"))

    def cpu(name: str) -> float | None:
        t = scen.get(name, {}).get("throughput") or {}
        value = t.get("cpu_us_per_message") if t.get("ok") else None
        return float(value) if value else None

    one, two, peer = rate("edgewatch"), rate("edgewatch_x2"), rate("telegraf")
    db, broker = _rate(ceil.get("database")), _rate(ceil.get("broker"))
    return {
        "edgewatch_over_telegraf": _ratio(one, peer),
        "edgewatch_x2_over_telegraf": _ratio(two, peer),
        "edgewatch_over_database_ceiling": _ratio(one, db),
        "edgewatch_x2_over_database_ceiling": _ratio(two, db),
        "edgewatch_over_broker_ceiling": _ratio(one, broker),
        "telegraf_over_database_ceiling": _ratio(peer, db),
        "edgewatch_x2_over_edgewatch": _ratio(two, one),
        # CPU per message is the least noisy comparison on a shared machine.
        "edgewatch_cpu_per_msg_over_telegraf": _ratio(cpu("edgewatch"), cpu("telegraf")),
        **drain_ratios(results.get("drain") or {}),
    }


def _drain_rate(drain: dict[str, Any], name: str, workload: str, unit: str) -> float | None:
    run = (drain.get(name) or {}).get(workload) if name != "database" else drain.get(name)
    if not run or not run.get("ok") or not run.get(unit):
        return None
    return float(run[unit])


def drain_ratios(drain: dict[str, Any]) -> dict[str, float | None]:
    """Drain-mode ratios (bench/drain.py): the better of 1 process and 2 replicas counts."""
    if not drain:
        return {}

    def best(workload: str, unit: str = "readings_per_s") -> float | None:
        rates = [_drain_rate(drain, n, workload, unit) for n in ("edgewatch", "edgewatch_x2")]
        known = [r for r in rates if r is not None]
        return max(known) if known else None

    def one(name: str, workload: str, unit: str = "readings_per_s") -> float | None:
        return _drain_rate(drain, name, workload, unit)

    db_fields = _drain_rate(drain, "database", "", "fields_per_s")
    return {
        "drain_single_vs_telegraf": _ratio(best("single"), one("telegraf", "single")),
        "drain_batch_vs_telegraf": _ratio(best("batch"), one("telegraf", "batch")),
        "drain_batch_vs_db_ceiling": _ratio(best("batch", "fields_per_s"), db_fields),
        "drain_single_x1_vs_telegraf": _ratio(
            one("edgewatch", "single"), one("telegraf", "single")
        ),
        "drain_batch_x1_vs_telegraf": _ratio(one("edgewatch", "batch"), one("telegraf", "batch")),
        "drain_single_x2_vs_telegraf": _ratio(
            one("edgewatch_x2", "single"), one("telegraf", "single")
        ),
        "drain_batch_x2_vs_telegraf": _ratio(
            one("edgewatch_x2", "batch"), one("telegraf", "batch")
        ),
    }


def _query(results: dict[str, Any], query: str, rng: str) -> dict[str, Any] | None:
    for row in results.get("queries", {}).get("results", []):
        if row["query"] == query and row["range"] == rng and row.get("dashboard_default"):
            return dict(row)
    return None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    r = results.get("ratios", {})
    scen = results.get("scenarios", {}).get("edgewatch", {})
    latency = scen.get("latency") or {}
    trends = _query(results, "trends", "30 d")
    fleet = _query(results, "fleet_overview", "30 d lookback")

    def row(name: str, goal: str, value: float | None, met: bool | None) -> dict[str, Any]:
        return {"target": name, "goal": goal, "value": value, "met": met}

    def at_least(v: float | None, goal: float) -> bool | None:
        return None if v is None else v >= goal

    def below(v: float | None, goal: float) -> bool | None:
        return None if v is None else v < goal

    p99 = latency.get("p99_ms") if latency.get("ok") else None
    rss = scen.get("peak_rss_mb")
    t30 = trends["median_ms"] if trends else None
    fl = fleet["median_ms"] if fleet else None
    return [
        row("edgewatch / Telegraf msg/s", ">= 1.0", r.get("edgewatch_over_telegraf"),
            at_least(r.get("edgewatch_over_telegraf"), TARGET_TELEGRAF_RATIO)),
        row("edgewatch / database ceiling", ">= 0.8", r.get("edgewatch_over_database_ceiling"),
            at_least(r.get("edgewatch_over_database_ceiling"), TARGET_DB_RATIO)),
        row("p99 publish-to-queryable (ms)", "< 1000", p99, below(p99, TARGET_P99_MS)),
        row("ingest peak RSS (MB)", "< 300", rss, below(rss, TARGET_RSS_MB)),
        row("trends 30 d, 10 devices, median (ms)", "< 300", t30, below(t30, TARGET_TRENDS_30D_MS)),
        row("fleet overview, median (ms)", "< 500", fl, below(fl, TARGET_FLEET_MS)),
        *scale_targets(results),
    ]  # fmt: skip


def scale_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Drain-mode and fleet-at-scale targets (issue: the ingest past Telegraf at scale)."""
    r = results.get("ratios", {})
    q = results.get("queries", {})
    rows: list[tuple[str, str, float | None, float, bool]] = [
        ("drain single / Telegraf (readings/s)", ">= 1.0",
         r.get("drain_single_vs_telegraf"), 1.0, True),
        ("drain batch-of-50 / Telegraf (readings/s)", ">= 2.0",
         r.get("drain_batch_vs_telegraf"), 2.0, True),
        ("drain batch-of-50 / database ceiling (fields/s)", ">= 0.5",
         r.get("drain_batch_vs_db_ceiling"), 0.5, True),
        ("fleet overview 1,000 devices, median (ms)", "< 300", q.get("fleet_1000_ms"), 300, False),
        ("fleet overview 10,000 devices, median (ms)", "< 1000",
         q.get("fleet_10000_ms"), 1000, False),
    ]  # fmt: skip
    out = []
    for name, goal, value, limit, higher in rows:
        if value is None and name.startswith("drain") and "drain" not in results:
            continue
        met = None if value is None else (value >= limit if higher else value < limit)
        out.append({"target": name, "goal": goal, "value": value, "met": met})
    return out


def drain_table(results: dict[str, Any]) -> str:
    drain = results.get("drain") or {}
    rows: list[list[str]] = []
    names = (
        ("edgewatch", "edgewatch, 1 process"),
        ("edgewatch_x2", "edgewatch, 2 on a shared subscription"),
        ("telegraf", "Telegraf"),
        ("broker", "broker ceiling (mosquitto_sub)"),
    )
    for key, label in names:
        for workload in ("single", "batch"):
            run = (drain.get(key) or {}).get(workload) or {}
            rows.append([
                label, workload, _fmt(run.get("readings_per_s")), _fmt(run.get("fields_per_s")),
                _fmt(run.get("seconds"), 1), _fmt(run.get("cpu_us_per_reading"), 1),
                _fmt(run.get("publisher_messages_per_s")),
                "ok" if run.get("ok") else f"FAILED: {run.get('error')}",
            ])  # fmt: skip
    db = drain.get("database") or {}
    rows.append([
        "database ceiling (2 writers, gzip line protocol)", "lines of single",
        _fmt(db.get("readings_per_s")), _fmt(db.get("fields_per_s")), _fmt(db.get("seconds"), 1),
        "-", "-", "ok" if db.get("ok") else f"FAILED: {db.get('error')}",
    ])  # fmt: skip
    return _table(
        ["consumer", "workload", "readings/s", "fields/s", "s", "CPU us/reading",
         "queued at msg/s (generator)", "result"],
        rows,
    )  # fmt: skip


def fleet_scale_table(results: dict[str, Any]) -> str:
    scale = (results.get("queries") or {}).get("fleet_scale") or {}
    rows = [
        [f"{int(n):,}", _fmt(row.get("devices")), _fmt(row.get("cold_ms")),
         _fmt(row.get("median_ms")), _fmt(row.get("p95_ms")), _fmt(row.get("reps"))]
        for n, row in sorted(scale.items(), key=lambda kv: int(kv[0]))
    ]  # fmt: skip
    return _table(["devices", "returned", "cold (ms)", "median (ms)", "p95 (ms)", "reps"], rows)


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def throughput_table(results: dict[str, Any]) -> str:
    rows: list[list[str]] = []
    ceil = results.get("ceilings", {})
    for key, label in (("database", "database ceiling (gzip LP, 2 writers)"),
                       ("broker", "broker ceiling (QoS 1 -> mosquitto_sub)")):  # fmt: skip
        c = ceil.get(key)
        if c:
            rows.append([label, "ok" if c["ok"] else f"FAILED: {c['error']}",
                         _fmt(c["messages_per_s"]), _fmt(c["seconds"], 1),
                         "-", "-", "-", "-", "-"])  # fmt: skip
    for name in SCENARIOS:
        s = results.get("scenarios", {}).get(name)
        if not s:
            continue
        t = s.get("throughput") or {}
        lat = s.get("latency") or {}
        state = "ok" if s.get("ok") else f"FAILED: {s.get('error')}"
        rows.append([
            f"{name} ({s.get('description', '')})", state,
            _fmt(t.get("messages_per_s")), _fmt(t.get("seconds"), 1),
            _fmt(lat.get("p50_ms")), _fmt(lat.get("p99_ms")),
            _fmt(s.get("peak_rss_mb"), 1), _fmt(t.get("cpu_seconds"), 1),
            _fmt(t.get("cpu_us_per_message")),
        ])  # fmt: skip
    return _table(
        ["run", "result", "msg/s", "s", "p50 ms", "p99 ms", "peak RSS MB", "CPU s", "CPU µs/msg"],
        rows,
    )


def ratio_table(results: dict[str, Any]) -> str:
    rows = [[k.replace("_over_", " / ").replace("_", " "), _fmt(v, 2)]
            for k, v in results.get("ratios", {}).items()]  # fmt: skip
    return _table(["ratio (messages/s)", "value"], rows)


def query_table(results: dict[str, Any]) -> str:
    rows = [
        [r["query"], r["range"], r["source"] + (" (dashboard's pick)" * r["dashboard_default"]),
         _fmt(r["devices"]), _fmt(r["rows"]), _fmt(r["median_ms"], 1), _fmt(r["p95_ms"], 1),
         _fmt(r["reps"])]
        for r in results.get("queries", {}).get("results", [])
    ]  # fmt: skip
    return _table(["query", "range", "source", "devices", "rows", "median ms", "p95 ms", "reps"],
                  rows)  # fmt: skip


def target_table(results: dict[str, Any]) -> str:
    rows = [[t["target"], t["goal"], _fmt(t["value"], 2), _fmt(t["met"])]
            for t in results.get("targets", [])]  # fmt: skip
    return _table(["target", "goal", "measured", "met"], rows)


def console_summary(results: dict[str, Any]) -> str:
    parts = [throughput_table(results), ratio_table(results)]
    if results.get("queries", {}).get("results"):
        parts.append(query_table(results))
    parts.append(target_table(results))
    return "\n\n".join(parts) + "\n"


def drain_section(results: dict[str, Any]) -> str:
    drain = results.get("drain")
    parts = []
    if drain:
        msgs = drain.get("messages", {})
        parts.append(f"""## Drain: the consumers without the publisher

{drain.get("readings", 0):,} readings of {drain.get("fields_per_reading", 10)} metrics, as
{msgs.get("single", 0):,} single-reading messages and as {msgs.get("batch", 0):,} batches of
{drain.get("batch_size", 50)} (`bench/drain.py`). Each consumer connects once (its persistent
session and subscription exist), stops, the workload is queued in its session by the Python
publisher (its rate is the generator's ceiling, in the table), then the consumer starts and the
clock runs from its start until a Flux count shows every reading stored; every field's count
is checked. fields/s = readings/s x 10 (the metric fields). The database ceiling writes the
ingest's own raw lines (telemetry, seq) for the single workload.

{drain_table(results)}
""")
    if (results.get("queries") or {}).get("fleet_scale"):
        parts.append(f"""## The fleet overview at scale

`FleetStore.fleet()` (the dashboard's own code) on a state bucket grown to each size; cold
is the first call after growing it, median and p95 over the repetitions after it.

{fleet_scale_table(results)}
""")
    return "\n".join(parts) + ("\n" if parts else "")


def render_markdown(results: dict[str, Any], notes: str) -> str:
    m = results["machine"]
    cfg = results["config"]
    ver = "\n".join(f"- {k}: {v}" for k, v in results["versions"].items())
    queries = results.get("queries", {})
    q = queries.get("config", {})
    run = f"{results['date']} ({results['mode']} run, {results['elapsed_s']:.0f} s)"
    stream = (
        f"{cfg['messages']:,} telemetry messages of {cfg['metrics_per_message']} metrics "
        f"(plus `seq`) from {cfg['devices']:,} devices"
    )
    inflight = cfg["publisher_max_inflight"]
    rate = f"{cfg['latency_rate_per_s']:,.0f} msg/s for {cfg['latency_seconds']:.0f} s"
    seeded = (
        f"{q.get('rollup_1m_days', '-')} days of 1-minute rollups and "
        f"{q.get('rollup_1h_days', '-')} days of 1-hour rollups (stat mean/min/max of "
        f"{', '.join(q.get('metrics', []))}) for {q.get('trend_devices_seeded', '-')} devices, "
        f"{q.get('raw_hours', '-')} h of raw readings every {q.get('raw_interval_s', '-')} s "
        f"for them, and the last status and readings of {q.get('fleet_devices', '-')} devices"
    )
    timed = (
        f"the dashboard's own `{queries.get('code', '-')}`, median and p95 of "
        f"{q.get('reps', '-')} repetitions after one untimed warm-up"
    )
    return f"""# Benchmarks

Generated by `edgewatch bench` on {run}. Reproduce with:

```
{results["command"]}
```

Machine: {m["nproc"]} CPUs ({m["cpu_model"]}), {m["memory_gib"]} GiB memory, Linux {m["kernel"]};
everything on loopback, each run with its own fresh Mosquitto and influxd.

Versions:
{ver}

## Ingest throughput and latency

The same stream for every run: {stream}, pre-generated (`bench/workload.py`) and published by
one paho-mqtt QoS 1 publisher (max in-flight {inflight}) in its own process. msg/s is messages
divided by the time from the first publish until a Flux count of stored readings equals the
number sent; every run then checks the count of every metric field, and a run that lost
anything is reported as FAILED. Latency: {rate}, readings stamped with their publish time; a
probe device's points are polled every 50 ms, latency = arrival of the first answer holding a
probe minus its `ts` (an upper bound). Peak RSS is VmHWM of the service process (the largest
replica for two), CPU is utime+stime during the throughput phase (summed over replicas).

{throughput_table(results)}

Ratios (the point of the exercise: absolute figures move with the machine):

{ratio_table(results)}

## Dashboard queries

Seeded: {seeded}. Timed: {timed}.

{query_table(results)}

{drain_section(results)}## Targets

{target_table(results)}

{NOTES_MARKER}
{notes}"""


def existing_notes(path: Path) -> str:
    try:
        text = path.read_text()
    except OSError:
        return ""
    if NOTES_MARKER not in text:
        return ""
    return text.split(NOTES_MARKER, 1)[1].lstrip("\n")
