"""The Models page's fleet: the simulator's own devices and rollout plan, seeded directly.

The simulator's pure parts (edge.devices, edge.rollout) produce every reading and status of
a 4 x 10 fleet over the last `STEPS` readings, written as the ingest stores them (raw lines,
state lines with receipt time = the message's time). The returned truth is the plan's.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

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
from edge.rollout import RolloutPlan, plan_rollout
from edge.sites import fleet_sites
from edgewatch.models import Reading, StatusEvent, Telemetry
from edgewatch.schema import state_lines, telemetry_lines
from tests.integration.dashboard_seed import SEED_WRITER, DashboardDB

NS = 1_000_000_000
SEED = 1
STEPS = 100
INTERVAL_S = 30
DRIFT_FROM_STEP = 50


@dataclass(frozen=True)
class ModelTruth:
    plan: RolloutPlan
    # "model version" -> devices running it at the end
    final_counts: dict[str, int]
    drifting: tuple[str, str]
    moved: set[tuple[str, str]]
    start_ns: int


def seed_models(db: DashboardDB) -> ModelTruth:
    specs = build_fleet(fleet_sites(4), 10, SEED)
    plan = plan_rollout(specs, SEED)
    cameras = [s for s in specs if s.kind == DeviceKind.INFERENCE_BOX]
    # The drifting camera: one that neither moves nor is tampered, so each story stays apart.
    drifting = next((s.site, s.device) for s in cameras if (s.site, s.device) not in plan.moves_at)
    now_ns = time.time_ns()
    start_ns = now_ns - STEPS * INTERVAL_S * NS
    raw: list[str] = []
    state: list[str] = []
    final: Counter[str] = Counter()
    for spec in cameras:
        key = (spec.site, spec.device)
        rng = device_rng(SEED, spec.site, spec.device)
        dev_state = initial_state(spec, rng)
        if key == drifting:
            dev_state = with_fault(dev_state, Fault(FaultKind.MODEL_DRIFT, DRIFT_FROM_STEP, 10**6))
        version = None
        for step in range(STEPS):
            ts_ns = start_ns + step * INTERVAL_S * NS
            running = plan.running(spec, step)
            assert running is not None
            if running.version != version:
                version = running.version
                status = StatusEvent(
                    site=spec.site, device=spec.device, ts_ns=ts_ns, state="online",
                    interval_s=INTERVAL_S, model=running.model, model_version=version,
                    model_sha256=running.sha256, labels=plan.labels(spec),
                )  # fmt: skip
                state.extend(state_lines(status, ts_ns, writer=SEED_WRITER))
            dev_state, sample = next_sample(spec, dev_state, ts_ns, rng, slowdown=running.slowdown)
            message = Telemetry(spec.site, spec.device, (Reading(ts_ns, sample.metrics),))
            raw.extend(telemetry_lines(message))
        final[f"{spec.model} {version}"] += 1
    db.write(raw)
    db.write(state, db.bucket_state)
    moved = {k for k, step in plan.moves_at.items() if step < STEPS}
    return ModelTruth(plan, dict(final), drifting, moved, start_ns)
