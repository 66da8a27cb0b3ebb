"""dashboard room, pure: the Models page's frames and figures, from query rows.

Rows in (as `dashboard.model_data` reads them), pandas frames, verdicts and Plotly figures
out; the statistics themselves are the core's (`edgewatch.model_fleet`), so the alerter's rules
judge drift and integrity exactly as this page shows them. No Streamlit, no InfluxDB here.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from edgewatch.labels import Selector, label_terms, matches
from edgewatch.model_fleet import (
    Comparison,
    DeviceModel,
    DriftResult,
    IntegrityFlag,
    OpsState,
    StatusPoint,
    StatusRow,
    VersionChange,
    compare_groups,
    drift_results,
    histogram_counts,
    integrity_flags,
    inventory,
    parse_history,
    parse_ops,
    percentile,
    version_changes,
)

# Re-exported: the page and the bench read them from here with the frames.
__all__ = [
    "OpsState", "StatusRow", "drift_results", "histogram_counts", "inventory",
    "parse_history", "parse_ops",
]  # fmt: skip

MODEL_METRICS = ("inference_ms", "fps", "detections", "model_confidence")
COMPARED_METRICS = ("inference_ms", "fps", "model_confidence")
NS_PER_DAY = 86400 * 1_000_000_000
Key = tuple[str, str]


def filter_devices(
    devices: Sequence[DeviceModel], selector: Selector | Mapping[str, str]
) -> list[DeviceModel]:
    """The devices in a label group (`edgewatch.labels.matches`: every term holds)."""
    return [d for d in devices if matches(d.labels, selector)]


def label_choices(devices: Sequence[DeviceModel]) -> list[str]:
    """Every `key=value` any device carries, for the group filter."""
    return label_terms(d.labels for d in devices)


def versions_frame(devices: Sequence[DeviceModel]) -> pd.DataFrame:
    """Every model and version with its device count and sites."""
    groups: dict[tuple[str, str], list[DeviceModel]] = {}
    for device in devices:
        groups.setdefault((device.model, device.version), []).append(device)
    rows = [
        {
            "model": model,
            "version": version,
            "devices": len(members),
            "sites": ", ".join(sorted({m.site for m in members})),
        }
        for (model, version), members in sorted(groups.items())
    ]
    return pd.DataFrame(rows, columns=["model", "version", "devices", "sites"])


def where_frame(devices: Sequence[DeviceModel], flags: Sequence[IntegrityFlag]) -> pd.DataFrame:
    """Where each version runs: one row per device, its hash and whether it is flagged."""
    flagged = {(f.site, f.device): f for f in flags}
    rows = [
        {
            "site": d.site,
            "device": d.device,
            "model": d.model,
            "version": d.version,
            "sha256": (d.sha256 or "")[:12],
            "labels": ", ".join(f"{k}={v}" for k, v in sorted(d.labels.items())),
            "integrity": "FLAGGED" if (d.site, d.device) in flagged else "ok",
        }
        for d in devices
    ]
    return pd.DataFrame(
        rows, columns=["site", "device", "model", "version", "sha256", "labels", "integrity"]
    )


def flags_for(devices: Sequence[DeviceModel], ops: OpsState) -> list[IntegrityFlag]:
    return integrity_flags(devices, ops.releases)


# -------------------------------------------------------------------- per-device values


def _timelines(history: Sequence[StatusRow]) -> dict[Key, tuple[list[int], list[str]]]:
    lines: dict[Key, tuple[list[int], list[str]]] = {}
    for row in history:
        if row.model is None or row.version is None:
            continue
        times, versions = lines.setdefault((row.site, row.device), ([], []))
        times.append(row.ts_ns)
        versions.append(f"{row.model} {row.version}")
    return lines


def version_at(timeline: tuple[list[int], list[str]], ts_ns: int) -> str:
    """The version a device ran at `ts_ns`: its last birth before, else its first one."""
    times, versions = timeline
    index = bisect.bisect_right(times, ts_ns) - 1
    return versions[max(index, 0)]


def window_frame(
    rows: Iterable[Mapping[str, Any]], history: Sequence[StatusRow], keys: set[Key]
) -> pd.DataFrame:
    """Windowed metric rows (one per device and window, the metrics side by side), long
    format, labelled with the version each device ran in that window."""
    timelines = _timelines(history)
    out = []
    for row in rows:
        key = (str(row["site"]), str(row["device"]))
        timeline = timelines.get(key)
        if timeline is None or key not in keys:
            continue
        ts_ns = int(row["time_ns"])
        version = version_at(timeline, ts_ns)
        for metric in MODEL_METRICS:
            value = row.get(metric)
            if value is None or (isinstance(value, float) and pd.isna(value)):
                continue
            out.append(
                {
                    "site": key[0],
                    "device": key[1],
                    "version": version,
                    "metric": metric,
                    "time_ns": ts_ns,
                    "value": float(value),
                }
            )
    return pd.DataFrame(out, columns=["site", "device", "version", "metric", "time_ns", "value"])


def device_values(windows: pd.DataFrame) -> pd.DataFrame:
    """Per (device, version, metric): the mean of its windows (one value per device)."""
    if windows.empty:
        return pd.DataFrame(columns=["site", "device", "version", "metric", "value"])
    keys = ["site", "device", "version", "metric"]
    return windows.groupby(keys)["value"].mean().reset_index()


def performance_frame(
    values: pd.DataFrame, alert_counts: Mapping[Key, int], span_days: float
) -> pd.DataFrame:
    """Per version: latency p50/p95 across devices, fps, detections, confidence, alert rate."""
    columns = [
        "version", "devices", "inference_ms p50", "inference_ms p95", "fps p50",
        "detections p50", "confidence p50", "alerts per device-day",
    ]  # fmt: skip
    rows = []
    for version, group in values.groupby("version") if not values.empty else []:
        devices = sorted(set(zip(group["site"], group["device"], strict=True)))

        def metric(name: str, group: pd.DataFrame = group) -> list[float]:
            return [float(v) for v in group[group["metric"] == name]["value"]]

        alerts = sum(alert_counts.get(key, 0) for key in devices)
        rows.append(
            {
                "version": version,
                "devices": len(devices),
                "inference_ms p50": percentile(metric("inference_ms"), 50),
                "inference_ms p95": percentile(metric("inference_ms"), 95),
                "fps p50": percentile(metric("fps"), 50),
                "detections p50": percentile(metric("detections"), 50),
                "confidence p50": percentile(metric("model_confidence"), 50),
                "alerts per device-day": alerts / (len(devices) * max(span_days, 1e-9)),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def version_values(values: pd.DataFrame, version: str, metric: str) -> list[float]:
    if values.empty:
        return []
    chosen = values[(values["version"] == version) & (values["metric"] == metric)]
    return [float(v) for v in chosen["value"]]


def compare_versions(values: pd.DataFrame, a: str, b: str) -> list[Comparison]:
    """Canary against stable: each compared metric, per-device values, Mann-Whitney U."""
    return [
        compare_groups(m, a, version_values(values, a, m), b, version_values(values, b, m))
        for m in COMPARED_METRICS
    ]


def comparison_frame(results: Sequence[Comparison]) -> pd.DataFrame:
    rows = [
        {
            "metric": r.metric,
            "devices a": r.n_a,
            "devices b": r.n_b,
            "median a": r.median_a,
            "median b": r.median_b,
            "U": r.test.u if r.test else None,
            "p": r.test.p_value if r.test else None,
            "Cliff's delta": r.test.cliffs_delta if r.test else None,
            "verdict": r.verdict,
        }
        for r in results
    ]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- drift


def drift_frame(results: Sequence[DriftResult]) -> pd.DataFrame:
    rows = [
        {
            "site": r.site,
            "device": r.device,
            "PSI": r.psi,
            "baseline median bin": r.baseline_median,
            "recent median bin": r.recent_median,
            "readings": r.baseline_readings + r.recent_readings,
        }
        for r in results
        if r.drifting
    ]
    return pd.DataFrame(
        rows,
        columns=["site", "device", "PSI", "baseline median bin", "recent median bin", "readings"],
    )


# --------------------------------------------------------------------------- rollouts


def rollout_changes(history: Sequence[StatusRow]) -> list[VersionChange]:
    return version_changes(
        StatusPoint(r.ts_ns, r.site, r.device, r.model, r.version)
        for r in history
        if r.model is not None and r.version is not None
    )


def rollout_frame(changes: Sequence[VersionChange]) -> pd.DataFrame:
    rows = [
        {
            "time": pd.Timestamp(c.ts_ns, unit="ns", tz="UTC"),
            "site": c.site,
            "device": c.device,
            "model": c.model,
            "from": c.from_version,
            "to": c.to_version,
        }
        for c in changes
    ]
    return pd.DataFrame(rows, columns=["time", "site", "device", "model", "from", "to"])


def rollout_figure(changes: Sequence[VersionChange]) -> go.Figure:
    """The rollout timeline: a mark per device that moved, at the time it moved."""
    frame = rollout_frame(changes)
    figure = go.Figure()
    for (model, to), group in frame.groupby(["model", "to"]) if not frame.empty else []:
        figure.add_trace(
            go.Scatter(
                x=group["time"],
                y=group["site"] + "/" + group["device"],
                mode="markers",
                marker={"symbol": "diamond", "size": 11},
                name=f"{model} → {to}",
                text=group["from"] + " → " + group["to"],
                hovertemplate="%{y}<br>%{x}<br>%{text}<extra></extra>",
            )
        )
    figure.update_layout(
        title="Rollouts: which devices moved when",
        height=320,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        yaxis={"title": None},
    )
    return figure


def confidence_figure(windows: pd.DataFrame) -> go.Figure:
    """The confidence distribution of each version (per-device windows), as box plots."""
    figure = go.Figure()
    if not windows.empty:
        chosen = windows[windows["metric"] == "model_confidence"]
        for version, group in chosen.groupby("version"):
            figure.add_trace(go.Box(y=group["value"], name=str(version), boxpoints=False))
    figure.update_layout(
        title="Confidence by version", height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10}
    )
    return figure


def default_pair(changes: Sequence[VersionChange], versions: Sequence[str]) -> tuple[str, str]:
    """The versions to compare first: the latest rollout's new and old ones, when both ran."""
    for change in reversed(changes):
        new = f"{change.model} {change.to_version}"
        old = f"{change.model} {change.from_version}"
        if new in versions and old in versions:
            return new, old
    return versions[-1], versions[0]
