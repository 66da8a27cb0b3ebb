"""edge room: the simulated fleet's models: a staged rollout, a slower version, a tampered hash.

Pure: the plan is made from the fleet's specs and the seed, and answers "which version, which
hash, which labels does this camera report at reading `step`". The simulator republishes a
camera's birth (its retained status) when its version changes, so the rollout reaches the
state bucket's status history exactly as a real one would; the plan itself is the ground
truth the tests compare the Models page against.

The story it tells: the model most cameras run gets a new version, first on a canary ring of
`STAGE_SIZE` cameras, then `STAGE_SIZE` more every `STAGE_STEPS` readings; the new version is
slower (`NEW_VERSION_SLOWDOWN` times the inference time, so fewer frames per second); one
camera (the last to be rolled out) runs a model file whose hash differs from everyone else's.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass

from edge.devices import DeviceKind, DeviceSpec

# The version each model's rollout moves to.
NEXT_VERSION = {"yolo-v8n": "1.5.0", "yolo-v8s": "1.4.0", "rt-detr-l": "1.0.0"}
FIRST_STAGE_STEP = 12  # the canary stage begins at the 12th reading (1 min at 5 s)
STAGE_STEPS = 12  # readings between two stages
STAGE_SIZE = 2
# More than an overheating GPU's throttling (up to ~2.6 x): the demo's overheating site must
# not make the old version look as slow as the new one across devices.
NEW_VERSION_SLOWDOWN = 3.0
HARDWARE = ("jetson-orin", "jetson-nano", "hailo-8")


def model_sha256(model: str, version: str, *, tampered: bool = False) -> str:
    """The hash of a model file: one per (model, version), another for a tampered copy."""
    text = f"{model}:{version}" + (":tampered" if tampered else "")
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class RunningModel:
    """What a camera runs at one reading."""

    model: str
    version: str
    sha256: str
    slowdown: float


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    model: str | None
    from_version: str | None
    to_version: str | None
    # (site, device) -> the reading at which it moves to the new version
    moves_at: dict[tuple[str, str], int]
    canary: frozenset[tuple[str, str]]
    tampered: tuple[str, str] | None
    hardware: dict[tuple[str, str], str]

    def running(self, spec: DeviceSpec, step: int) -> RunningModel | None:
        """The model, version and hash the camera reports at reading `step`."""
        if spec.model is None or spec.model_version is None:
            return None
        key = (spec.site, spec.device)
        version, slowdown = spec.model_version, 1.0
        move = self.moves_at.get(key)
        if move is not None and step >= move and self.to_version is not None:
            version, slowdown = self.to_version, NEW_VERSION_SLOWDOWN
        sha = model_sha256(spec.model, version, tampered=key == self.tampered)
        return RunningModel(spec.model, version, sha, slowdown)

    def labels(self, spec: DeviceSpec) -> tuple[tuple[str, str], ...]:
        key = (spec.site, spec.device)
        if key not in self.hardware:
            return ()
        labels = {"hardware": self.hardware[key]}
        if key in self.moves_at:
            labels["ring"] = "canary" if key in self.canary else "stable"
        return tuple(sorted(labels.items()))

    def stage_starts(self) -> list[int]:
        return sorted(set(self.moves_at.values()))


def plan_rollout(specs: list[DeviceSpec], seed: int, *, enabled: bool = True) -> RolloutPlan:
    """The fleet's rollout: the model most cameras run, cameras in site/device order."""
    cameras = [s for s in specs if s.kind == DeviceKind.INFERENCE_BOX and s.model is not None]
    # Simulation, not security: a seeded generator of its own, so the device's readings
    # (drawn from `device_rng`) are the same as without labels.
    hardware = {
        (s.site, s.device): random.Random(f"{seed}:{s.site}:{s.device}:hw").choice(HARDWARE)  # noqa: S311
        for s in cameras
    }
    counts = Counter(s.model for s in cameras)
    if not enabled or not counts:
        return RolloutPlan(None, None, None, {}, frozenset(), None, hardware)
    # Most cameras first, the name breaks ties: deterministic whatever the dict order.
    model = min(counts, key=lambda m: (-counts[m], m or ""))
    targets = sorted((s for s in cameras if s.model == model), key=lambda s: (s.site, s.device))
    moves_at = {
        (s.site, s.device): FIRST_STAGE_STEP + (index // STAGE_SIZE) * STAGE_STEPS
        for index, s in enumerate(targets)
    }
    canary = frozenset((s.site, s.device) for s in targets[:STAGE_SIZE])
    tampered = (targets[-1].site, targets[-1].device) if len(targets) > STAGE_SIZE else None
    return RolloutPlan(
        model=model,
        from_version=targets[0].model_version,
        to_version=NEXT_VERSION.get(model or "", "2.0.0"),
        moves_at=moves_at,
        canary=canary,
        tampered=tampered,
        hardware=hardware,
    )
