"""The Models page's pure frames (dashboard/model_view.py)."""

from __future__ import annotations

from dashboard.model_view import (
    StatusRow,
    default_pair,
    device_values,
    drift_results,
    histogram_counts,
    inventory,
    parse_ops,
    performance_frame,
    rollout_changes,
    versions_frame,
    window_frame,
)
from edgewatch.model_fleet import bin_counts

NS = 1_000_000_000


def _row(ts: int, device: str, version: str, sha: str = "a" * 64) -> StatusRow:
    return StatusRow(ts * NS, "s1", device, "yolo", version, sha, {"ring": "canary"})


HISTORY = [_row(0, "cam-1", "1.0"), _row(0, "cam-2", "1.0"), _row(100, "cam-1", "2.0")]


def test_inventory_takes_each_devices_last_status_and_operator_labels_win() -> None:
    ops = parse_ops(
        [{"_measurement": "label_action", "site": "s1", "device": "cam-2", "key": "ring",
          "value": "stable", "action": "set"}]
    )  # fmt: skip
    devices = inventory(HISTORY, ops)
    assert [(d.device, d.version, d.labels["ring"]) for d in devices] == [
        ("cam-1", "2.0", "canary"),
        ("cam-2", "1.0", "stable"),
    ]
    frame = versions_frame(devices)
    assert list(frame["devices"]) == [1, 1]


def test_windows_are_split_by_the_version_the_device_ran() -> None:
    rows = [
        {"site": "s1", "device": "cam-1", "time_ns": 50 * NS, "inference_ms": 20.0},
        {"site": "s1", "device": "cam-1", "time_ns": 150 * NS, "inference_ms": 40.0},
    ]  # fmt: skip
    windows = window_frame(rows, HISTORY, {("s1", "cam-1")})
    assert list(windows["version"]) == ["yolo 1.0", "yolo 2.0"]
    values = device_values(windows)
    perf = performance_frame(values, {("s1", "cam-1"): 2}, span_days=1.0)
    assert list(perf["inference_ms p50"]) == [20.0, 40.0]
    assert list(perf["alerts per device-day"]) == [2.0, 2.0]


def test_rollout_and_default_pair() -> None:
    changes = rollout_changes(HISTORY)
    assert [(c.device, c.to_version) for c in changes] == [("cam-1", "2.0")]
    assert default_pair(changes, ["yolo 1.0", "yolo 2.0", "zz 1"]) == ("yolo 2.0", "yolo 1.0")


def _cumulative(values: list[float], window: str) -> list[dict[str, object]]:
    bounds = [i / 10 for i in range(11)]
    return [
        {"site": "s1", "device": "cam-1", "window": window, "le": b,
         "_value": float(sum(v <= b for v in values))}
        for b in bounds
    ]  # fmt: skip


def test_flux_histograms_become_the_same_bin_counts() -> None:
    values = [0.0, 0.05, 0.1, 0.15, 0.86, 0.95, 1.0]
    cumulative = {float(r["le"]): float(r["_value"]) for r in _cumulative(values, "x")}  # type: ignore[arg-type]
    assert histogram_counts(cumulative) == bin_counts(values)


def test_drift_compares_a_devices_last_third_with_its_first() -> None:
    rows = _cumulative([0.86] * 30, "baseline") + _cumulative([0.31] * 30, "recent")
    (result,) = drift_results(rows, {("s1", "cam-1")})
    assert result.drifting and result.recent_median == 0.4
