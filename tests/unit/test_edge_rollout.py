"""The simulated fleet's model story (edge/rollout.py): deterministic, staged, one tampered."""

from __future__ import annotations

from edge.devices import DeviceKind, build_fleet, device_rng, initial_state, next_sample
from edge.rollout import (
    FIRST_STAGE_STEP,
    STAGE_SIZE,
    STAGE_STEPS,
    model_sha256,
    plan_rollout,
)
from edge.sites import fleet_sites
from edgewatch.model_fleet import DeviceModel, integrity_flags

T0 = 1_767_225_600 * 1_000_000_000


def _fleet() -> list:  # type: ignore[type-arg]
    return build_fleet(fleet_sites(4), 10, seed=1)


def test_the_plan_is_deterministic_for_a_seed() -> None:
    assert plan_rollout(_fleet(), 1) == plan_rollout(_fleet(), 1)


def test_cameras_of_one_model_move_in_stages_canary_first() -> None:
    specs = _fleet()
    plan = plan_rollout(specs, 1)
    targets = sorted(plan.moves_at, key=lambda key: plan.moves_at[key])
    assert len(targets) >= 2 * STAGE_SIZE
    assert {plan.moves_at[k] for k in targets[:STAGE_SIZE]} == {FIRST_STAGE_STEP}
    assert plan.moves_at[targets[STAGE_SIZE]] == FIRST_STAGE_STEP + STAGE_STEPS
    by_key = {(s.site, s.device): s for s in specs}
    first = by_key[targets[0]]
    before = plan.running(first, FIRST_STAGE_STEP - 1)
    after = plan.running(first, FIRST_STAGE_STEP)
    assert before is not None and after is not None
    assert (before.version, after.version) == (plan.from_version, plan.to_version)
    assert dict(plan.labels(first))["ring"] == "canary"
    assert "hardware" in dict(plan.labels(first))
    sensor = next(s for s in specs if s.kind == DeviceKind.SENSOR)
    assert plan.running(sensor, 0) is None and plan.labels(sensor) == ()


def test_one_camera_is_tampered_and_the_integrity_rule_finds_it() -> None:
    specs = _fleet()
    plan = plan_rollout(specs, 1)
    assert plan.tampered is not None
    step = max(plan.moves_at.values())
    devices = []
    for spec in specs:
        running = plan.running(spec, step)
        if running is not None:
            devices.append(
                DeviceModel(
                    spec.site, spec.device, running.model, running.version, running.sha256, {}
                )
            )
    flags = integrity_flags(devices, {})
    assert [(f.site, f.device) for f in flags] == [plan.tampered]
    assert flags[0].expected == model_sha256(plan.model or "", plan.to_version or "")


def test_the_new_version_is_slower() -> None:
    spec = next(s for s in _fleet() if s.kind == DeviceKind.INFERENCE_BOX)
    rng_a, rng_b = device_rng(1, spec.site, spec.device), device_rng(1, spec.site, spec.device)
    _, old = next_sample(spec, initial_state(spec, rng_a), T0, rng_a)
    _, new = next_sample(spec, initial_state(spec, rng_b), T0, rng_b, slowdown=3.0)
    assert float(new.metrics["inference_ms"]) > 2 * float(old.metrics["inference_ms"]) - 3


def test_without_the_demo_script_nothing_rolls_out() -> None:
    plan = plan_rollout(_fleet(), 1, enabled=False)
    assert plan.moves_at == {} and plan.tampered is None
