"""The model fleet's statistics and rules (edgewatch/model_fleet.py), against known values."""

from __future__ import annotations

import math

import pytest

from edgewatch.model_fleet import (
    PSI_THRESHOLD,
    DeviceModel,
    OpsState,
    StatusPoint,
    bin_counts,
    compare_groups,
    device_drift,
    effect_size_words,
    integrity_flags,
    inventory,
    mann_whitney_u,
    matches_labels,
    percentile,
    population_stability_index,
    shadow_status_rows,
    version_changes,
)

SHA_A = "a" * 64
SHA_B = "b" * 64


def test_mann_whitney_matches_scipy_documented_example() -> None:
    # scipy.stats.mannwhitneyu docs: males against females, method="asymptotic".
    result = mann_whitney_u([19, 22, 16, 29, 24], [20, 11, 17, 12])
    assert result.u == 17.0
    assert result.p_value == pytest.approx(0.11134688653314041, rel=1e-9)


def test_mann_whitney_separated_samples() -> None:
    result = mann_whitney_u([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert result.u == 0.0
    # z = (12.5 - 0.5) / sqrt(25 * 11 / 12)
    z = 12.0 / math.sqrt(25 * 11 / 12)
    assert result.p_value == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert result.p_value == pytest.approx(0.01219, abs=1e-5)
    assert result.cliffs_delta == -1.0


def test_mann_whitney_tie_correction_by_hand() -> None:
    # Ranks: three 1s share rank 2, three 2s rank 5; U_a = 9 - 6 = 3.
    # Variance = 3*3/12 * (7 - 2*(27-3)/(6*5)) = 4.05; z = (1.5 - 0.5) / sqrt(4.05).
    result = mann_whitney_u([1, 1, 2], [1, 2, 2])
    assert result.u == 3.0
    assert result.z == pytest.approx(-1 / math.sqrt(4.05))
    assert result.p_value == pytest.approx(math.erfc(1 / math.sqrt(4.05) / math.sqrt(2)))


def test_mann_whitney_all_equal_is_no_evidence() -> None:
    result = mann_whitney_u([3, 3, 3], [3, 3])
    assert (result.p_value, result.cliffs_delta) == (1.0, 0.0)


def test_cliffs_delta_counts_pairs() -> None:
    # Pairs: a > b in 5 of 6, a < b in 1: delta = (5 - 1) / 6.
    assert mann_whitney_u([3, 5], [1, 2, 4]).cliffs_delta == pytest.approx(4 / 6)
    assert effect_size_words(0.1) == "negligible"
    assert effect_size_words(-0.5) == "large"


def test_comparison_says_too_little_data_below_the_minimum() -> None:
    result = compare_groups("inference_ms", "1.5.0", [40, 41, 42], "1.4.2", [20, 21, 22, 23])
    assert not result.enough_data
    assert result.verdict.startswith("too little data to tell")


def test_comparison_names_the_slower_version() -> None:
    slow = [40.0, 42.0, 45.0, 41.0, 44.0]
    fast = [20.0, 22.0, 25.0, 21.0, 24.0]
    result = compare_groups("inference_ms", "1.5.0", slow, "1.4.2", fast)
    assert result.enough_data and result.test is not None
    assert result.test.p_value < 0.05
    assert "inference_ms of 1.5.0 is higher than 1.4.2" in result.verdict
    assert result.median_a == 42.0


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10, 20, 30, 40, 50], 95) == pytest.approx(48.0)
    assert percentile([], 50) is None


def test_psi_of_identical_windows_is_zero_and_shift_is_large() -> None:
    baseline = [0.85 + 0.001 * (i % 10) for i in range(100)]
    assert population_stability_index(baseline, baseline) == pytest.approx(0.0)
    shifted = [0.45 + 0.001 * (i % 10) for i in range(100)]
    assert population_stability_index(baseline, shifted) > PSI_THRESHOLD


def test_psi_known_value() -> None:
    # Half in bin 8 and half in bin 9 against all in bin 8:
    # bin 8: (0.5 - 1) ln(0.5/1); bin 9: (0.5 - 1e-4) ln(0.5/1e-4).
    psi = population_stability_index([0.85] * 10, [0.85] * 5 + [0.95] * 5)
    expected = (0.5 - 1) * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert psi == pytest.approx(expected)


def test_drift_needs_enough_readings() -> None:
    thin = device_drift("s", "d", bin_counts([0.8] * 4), bin_counts([0.3] * 4))
    assert thin.psi is None and not thin.drifting
    drifting = device_drift("s", "d", bin_counts([0.86] * 30), bin_counts([0.4] * 30))
    assert drifting.drifting
    assert (drifting.baseline_median, drifting.recent_median) == (0.9, 0.4)


def test_bins_are_right_closed_like_fluxs_histogram() -> None:
    # linearBins(start: 0.0, width: 0.1, count: 11): upper edges 0.1, 0.2, ... 1.0.
    assert bin_counts([0.0, 0.1, 0.10001, 0.95, 1.0]) == [2, 1, 0, 0, 0, 0, 0, 0, 0, 2]


def _device(name: str, sha: str | None, version: str = "1.5.0") -> DeviceModel:
    return DeviceModel("site-1", name, "yolo-v8n", version, sha, {})


def test_integrity_against_a_registered_release() -> None:
    devices = [_device("cam-01", SHA_A), _device("cam-02", SHA_B), _device("cam-03", None)]
    flags = integrity_flags(devices, {("yolo-v8n", "1.5.0"): SHA_A})
    assert [(f.device, f.rule) for f in flags] == [("cam-02", "release")]
    assert "registered release" in flags[0].message


def test_integrity_against_the_majority_without_a_release() -> None:
    devices = [_device("cam-01", SHA_A), _device("cam-02", SHA_A), _device("cam-03", SHA_B)]
    flags = integrity_flags(devices, {})
    assert [(f.device, f.rule, f.expected) for f in flags] == [("cam-03", "majority", SHA_A)]


def test_integrity_without_a_majority_flags_nobody() -> None:
    assert integrity_flags([_device("cam-01", SHA_A), _device("cam-02", SHA_B)], {}) == []


def test_version_changes_are_rollout_marks() -> None:
    history = [
        StatusPoint(1, "s", "cam-01", "yolo-v8n", "1.4.2"),
        StatusPoint(2, "s", "cam-02", "yolo-v8n", "1.4.2"),
        StatusPoint(5, "s", "cam-01", "yolo-v8n", "1.5.0"),
        StatusPoint(6, "s", "cam-01", "yolo-v8n", "1.5.0"),
    ]
    changes = version_changes(history)
    assert [(c.ts_ns, c.device, c.from_version, c.to_version) for c in changes] == [
        (5, "cam-01", "1.4.2", "1.5.0")
    ]


def test_label_groups() -> None:
    assert matches_labels({"ring": "canary", "hardware": "orin"}, {"ring": "canary"})
    assert not matches_labels({"ring": "stable"}, {"ring": "canary"})
    assert matches_labels({}, {})


def test_the_alerter_reads_the_inventory_from_the_shadow() -> None:
    # Two writers described the device; the later description is its model now. A row that
    # only saw telemetry, or a will, carries no model and is no description.
    rows = [
        {"site": "s", "device": "d", "writer": "i1", "model": "yolo", "model_version": "1.3",
         "model_sha256": "a" * 64, "described_received_ns": 10},
        {"site": "s", "device": "d", "writer": "i2", "model": "yolo", "model_version": "1.4",
         "labels": '{"ring":"canary"}', "described_received_ns": 20},
        {"site": "s", "device": "e", "writer": "i1", "seen_received_ns": 5},
    ]  # fmt: skip
    [row] = shadow_status_rows(rows)
    assert (row.site, row.device, row.version, row.sha256) == ("s", "d", "1.4", None)
    assert row.ts_ns == 20
    assert row.labels == {"ring": "canary"}
    [device] = inventory([row], OpsState())
    assert device.version == "1.4"
