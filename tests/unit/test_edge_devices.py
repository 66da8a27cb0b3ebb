"""Simulated devices: deterministic for a seed, plausible values, faults that show."""

from __future__ import annotations

from edge.devices import (
    DeviceKind,
    Fault,
    FaultKind,
    build_fleet,
    device_rng,
    initial_state,
    next_sample,
    with_fault,
)
from edge.simulator import DEMO_SCRIPT, demo_faults
from edge.sites import fleet_sites
from edgewatch.contract import is_valid_metric_name, is_valid_name

NS = 1_000_000_000
T0 = 1_767_268_800 * NS  # 2026-01-01T12:00:00Z


def _run(seed: int, steps: int = 50) -> list[dict[str, object]]:
    specs = build_fleet(fleet_sites(2), 3, seed)
    out = []
    for spec in specs:
        rng = device_rng(seed, spec.site, spec.device)
        state = initial_state(spec, rng)
        for step in range(steps):
            state, sample = next_sample(spec, state, T0 + step * 5 * NS, rng)
            out.append(sample.metrics)
    return out


def test_same_seed_same_fleet_and_readings() -> None:
    assert build_fleet(fleet_sites(4), 5, 42) == build_fleet(fleet_sites(4), 5, 42)
    assert _run(42) == _run(42)
    assert _run(42) != _run(43)


def test_names_and_metrics_follow_the_contract() -> None:
    specs = build_fleet(fleet_sites(14), 7, 1)
    assert len({(s.site, s.device) for s in specs}) == 14 * 7
    assert all(is_valid_name(s.site) and is_valid_name(s.device) for s in specs)
    kinds = {s.kind for s in specs}
    assert kinds == set(DeviceKind)
    for metrics in _run(1):
        assert all(is_valid_metric_name(name) for name in metrics)


def test_overheat_builds_up_and_cools_down() -> None:
    spec = next(s for s in build_fleet(fleet_sites(1), 3, 5) if s.kind == DeviceKind.INFERENCE_BOX)
    rng = device_rng(5, spec.site, spec.device)
    state = with_fault(initial_state(spec, rng), Fault(FaultKind.OVERHEAT, 0, 20))
    temps = []
    for step in range(60):
        state, sample = next_sample(spec, state, T0 + step * 5 * NS, rng)
        temps.append(float(sample.metrics["gpu_temp_c"]))
    assert max(temps[:20]) > 90  # well over the 85 C alert
    assert temps[-1] < 80  # back to normal after the fault


def test_camera_loss_and_clock_skew() -> None:
    spec = next(s for s in build_fleet(fleet_sites(1), 3, 5) if s.kind == DeviceKind.INFERENCE_BOX)
    rng = device_rng(5, spec.site, spec.device)
    state = initial_state(spec, rng)
    state = with_fault(state, Fault(FaultKind.CAMERA_LOSS, 0, 2))
    state = with_fault(state, Fault(FaultKind.CLOCK_SKEW, 0, 1))
    state, first = next_sample(spec, state, T0, rng)
    assert first.metrics["camera_ok"] is False and first.metrics["fps"] == 0.0
    assert first.clock_offset_ns == 600 * NS
    state, second = next_sample(spec, state, T0, rng)
    state, third = next_sample(spec, state, T0, rng)
    assert second.clock_offset_ns == 0 and third.metrics["camera_ok"] is True


def test_demo_script_spreads_over_sites_and_fits_the_kinds() -> None:
    specs = build_fleet(fleet_sites(4), 5, 1)
    script = demo_faults(specs)
    assert len(script) == len(DEMO_SCRIPT)
    assert {site for site, _ in script} == {s.name for s in fleet_sites(4)}
    kinds = {(s.site, s.device): s.kind for s in specs}
    for key, faults in script.items():
        if faults[0].kind in (FaultKind.MODEL_DRIFT, FaultKind.CAMERA_LOSS):
            assert kinds[key] == DeviceKind.INFERENCE_BOX
