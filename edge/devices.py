"""edge room: simulated edge-AI devices as pure models, `(spec, state, time, rng) -> reading`.

Three kinds: an inference box with a camera (runs a detector: inference_ms, fps, detections,
model_confidence, GPU and CPU temperatures, memory, disk, power, camera_ok), a gateway and a
sensor node (temperatures, memory, disk, power as fits). Values follow a daily pattern in the
site's local solar time (busier afternoons: more detections, more load, warmer) plus noise.
Temperatures have thermal inertia: they move a fraction of the way to their target per reading,
so an overheat builds up over a few readings and cools down the same way.

Faults that change readings live here (overheat, model drift, camera loss, clock skew); the
ones that change the link (network outage, crash, silence, malformed messages) are the
simulator's, but every fault is drawn here so one seeded `random.Random` per device decides
everything about that device. Nothing here reads a clock or the global `random`.

Also here: the edge alert rules each kind runs (thresholds with hysteresis, see filters.py).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from enum import StrEnum

from edge.filters import AlertRule
from edge.sites import Site
from edgewatch.models import MetricValue

NS_PER_SECOND = 1_000_000_000
SECONDS_PER_DAY = 86400
CLOCK_SKEW_SECONDS = 600  # ahead by 10 min: past the contract's 5 min limit, so rejected


class DeviceKind(StrEnum):
    INFERENCE_BOX = "inference_box"
    GATEWAY = "gateway"
    SENSOR = "sensor"


class FaultKind(StrEnum):
    OVERHEAT = "overheat"
    MODEL_DRIFT = "model_drift"
    CAMERA_LOSS = "camera_loss"
    CLOCK_SKEW = "clock_skew"
    NETWORK_OUTAGE = "network_outage"
    CRASH = "crash"
    SILENT = "silent"
    MALFORMED = "malformed"


# Which faults a kind can have: a sensor has no camera and no model.
FAULTS_BY_KIND: dict[DeviceKind, tuple[FaultKind, ...]] = {
    DeviceKind.INFERENCE_BOX: tuple(FaultKind),
    DeviceKind.GATEWAY: (
        FaultKind.OVERHEAT,
        FaultKind.CLOCK_SKEW,
        FaultKind.NETWORK_OUTAGE,
        FaultKind.CRASH,
        FaultKind.SILENT,
        FaultKind.MALFORMED,
    ),
    DeviceKind.SENSOR: (
        FaultKind.OVERHEAT,
        FaultKind.CLOCK_SKEW,
        FaultKind.NETWORK_OUTAGE,
        FaultKind.CRASH,
        FaultKind.SILENT,
        FaultKind.MALFORMED,
    ),
}

# How long a fault lasts, in readings (low, high), drawn uniformly.
FAULT_DURATION_READINGS: dict[FaultKind, tuple[int, int]] = {
    FaultKind.OVERHEAT: (20, 60),
    FaultKind.MODEL_DRIFT: (30, 90),
    FaultKind.CAMERA_LOSS: (5, 20),
    FaultKind.CLOCK_SKEW: (2, 5),
    FaultKind.NETWORK_OUTAGE: (4, 12),
    FaultKind.CRASH: (15, 40),
    FaultKind.SILENT: (5, 8),
    FaultKind.MALFORMED: (1, 1),
}

_KIND_PREFIX = {
    DeviceKind.INFERENCE_BOX: "cam",
    DeviceKind.GATEWAY: "gw",
    DeviceKind.SENSOR: "env",
}
# Per site: mostly cameras, one gateway, some sensor nodes.
_KIND_CYCLE = (
    DeviceKind.INFERENCE_BOX,
    DeviceKind.INFERENCE_BOX,
    DeviceKind.GATEWAY,
    DeviceKind.SENSOR,
    DeviceKind.INFERENCE_BOX,
    DeviceKind.SENSOR,
)
_MODELS = (("yolo-v8n", "1.4.2"), ("yolo-v8s", "1.3.0"), ("rt-detr-l", "0.9.1"))
_FIRMWARE = ("2.1.0", "2.1.3", "2.2.0")


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """What does not change about a device."""

    site: str
    device: str
    kind: DeviceKind
    lat: float
    lon: float
    firmware: str
    model: str | None = None
    model_version: str | None = None
    base_temp_c: float = 55.0


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    start_step: int
    end_step: int  # exclusive

    def active(self, step: int) -> bool:
        return self.start_step <= step < self.end_step


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What changes from one reading to the next."""

    step: int = 0
    cpu_temp_c: float = 50.0
    gpu_temp_c: float = 55.0
    confidence: float = 0.86
    disk_used_pct: float = 40.0
    faults: tuple[Fault, ...] = ()

    def has(self, kind: FaultKind) -> bool:
        return any(f.kind == kind and f.active(self.step) for f in self.faults)


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of a device: its metrics and how far its clock is off."""

    metrics: dict[str, MetricValue]
    clock_offset_ns: int = 0


def device_rng(seed: int, spec_site: str, spec_device: str) -> random.Random:
    """The device's own generator: the same seed gives the same device whatever the fleet."""
    # Simulation, not security: a seeded generator is the point.
    return random.Random(f"{seed}:{spec_site}:{spec_device}")


def build_fleet(sites: list[Site], devices_per_site: int, seed: int) -> list[DeviceSpec]:
    """The fleet's devices, site by site; deterministic for the seed."""
    specs: list[DeviceSpec] = []
    for site in sites:
        counters: dict[DeviceKind, int] = {}
        for index in range(devices_per_site):
            kind = _KIND_CYCLE[index % len(_KIND_CYCLE)]
            counters[kind] = counters.get(kind, 0) + 1
            name = f"{_KIND_PREFIX[kind]}-{counters[kind]:02d}"
            rng = device_rng(seed, site.name, name)
            model: str | None = None
            version: str | None = None
            if kind == DeviceKind.INFERENCE_BOX:
                model, version = rng.choice(_MODELS)
            specs.append(
                DeviceSpec(
                    site=site.name,
                    device=name,
                    kind=kind,
                    # Devices of a site spread over a few hundred metres.
                    lat=round(site.lat + rng.uniform(-0.004, 0.004), 5),
                    lon=round(site.lon + rng.uniform(-0.006, 0.006), 5),
                    firmware=rng.choice(_FIRMWARE),
                    model=model,
                    model_version=version,
                    base_temp_c={
                        DeviceKind.INFERENCE_BOX: 58.0,
                        DeviceKind.GATEWAY: 48.0,
                        DeviceKind.SENSOR: 38.0,
                    }[kind]
                    + rng.uniform(-3.0, 3.0),
                )
            )
    return specs


def initial_state(spec: DeviceSpec, rng: random.Random) -> DeviceState:
    return DeviceState(
        cpu_temp_c=spec.base_temp_c - 5.0,
        gpu_temp_c=spec.base_temp_c,
        confidence=rng.uniform(0.82, 0.9),
        disk_used_pct=rng.uniform(20.0, 70.0),
    )


def alert_rules(kind: DeviceKind) -> tuple[AlertRule, ...]:
    """The local alert rules a device of this kind runs on its agent."""
    if kind == DeviceKind.INFERENCE_BOX:
        return (
            AlertRule("overheat", "critical", "gpu_temp_c", 85.0, 5.0, "above", "C"),
            AlertRule("model_drift", "major", "model_confidence", 0.6, 0.05, "below"),
            AlertRule("camera_loss", "major", "camera_ok", 0.5, 0.0, "below"),
        )
    return (AlertRule("overheat", "critical", "cpu_temp_c", 85.0, 5.0, "above", "C"),)


def daily_activity(ts_ns: int, lon: float) -> float:
    """0 at 03:00 local solar time, 1 at 15:00."""
    local_s = (ts_ns / NS_PER_SECOND + lon / 15.0 * 3600) % SECONDS_PER_DAY
    hour = local_s / 3600
    return 0.5 - 0.5 * math.cos(2 * math.pi * (hour - 3.0) / 24.0)


def draw_fault(spec: DeviceSpec, step: int, rng: random.Random, probability: float) -> Fault | None:
    """Maybe start a random fault at this step (`probability` per reading)."""
    if rng.random() >= probability:
        return None
    kind = rng.choice(FAULTS_BY_KIND[spec.kind])
    low, high = FAULT_DURATION_READINGS[kind]
    return Fault(kind, step, step + rng.randint(low, high))


def with_fault(state: DeviceState, fault: Fault) -> DeviceState:
    """The state with `fault` added (finished faults are forgotten)."""
    alive = tuple(f for f in state.faults if f.end_step > state.step)
    return replace(state, faults=(*alive, fault))


def _approach(current: float, target: float, rate: float) -> float:
    return current + (target - current) * rate


def next_sample(
    spec: DeviceSpec,
    state: DeviceState,
    ts_ns: int,
    rng: random.Random,
    *,
    slowdown: float = 1.0,
) -> tuple[DeviceState, Sample]:
    """The device's reading at `ts_ns` and its state after it. Same inputs, same outputs.

    `slowdown` multiplies the inference time: the model version a camera runs (edge.rollout).
    """
    activity = daily_activity(ts_ns, spec.lon)
    overheat = state.has(FaultKind.OVERHEAT)
    heat = 38.0 if overheat else 0.0
    gauss = rng.gauss

    # On an inference box the GPU is what overheats; the CPU next to it only warms up.
    cpu_heat = heat * 0.4 if spec.kind == DeviceKind.INFERENCE_BOX else heat
    cpu_target = spec.base_temp_c - 6.0 + 10.0 * activity + cpu_heat
    cpu = _approach(state.cpu_temp_c, cpu_target, 0.3) + gauss(0, 0.4)
    mem = 35.0 + 25.0 * activity + gauss(0, 2.0)
    disk = min(99.0, state.disk_used_pct + abs(gauss(0, 0.002)))
    metrics: dict[str, MetricValue] = {}

    gpu = state.gpu_temp_c
    confidence = state.confidence
    if spec.kind == DeviceKind.INFERENCE_BOX:
        camera_ok = not state.has(FaultKind.CAMERA_LOSS)
        gpu_target = spec.base_temp_c + 14.0 * activity + heat
        gpu = _approach(state.gpu_temp_c, gpu_target, 0.3) + gauss(0, 0.5)
        if state.has(FaultKind.MODEL_DRIFT):
            # Drift: the scene moved away from the training data, confidence erodes.
            confidence = max(0.2, confidence - rng.uniform(0.01, 0.03))
        else:
            confidence = _approach(confidence, 0.86, 0.2) + gauss(0, 0.005)
        confidence = min(0.99, max(0.0, confidence))
        # A hot GPU throttles: inference slows down and frames drop.
        throttle = 1.0 + max(0.0, gpu - 80.0) / 10.0
        inference_ms = (18.0 + 14.0 * activity) * throttle * slowdown + abs(gauss(0, 1.5))
        fps = min(30.0, 1000.0 / inference_ms) if camera_ok else 0.0
        detections = (
            max(0, round(rng.gauss(2.0 + 18.0 * activity, 2.0 + 2.0 * activity)))
            if camera_ok
            else 0
        )
        power = 9.0 + 16.0 * activity * (1.0 if camera_ok else 0.3) + heat / 6.0 + gauss(0, 0.4)
        metrics.update(
            inference_ms=round(inference_ms, 2),
            fps=round(fps, 1),
            detections=float(detections),
            model_confidence=round(confidence, 3),
            cpu_temp_c=round(cpu, 1),
            gpu_temp_c=round(gpu, 1),
            mem_used_pct=round(min(99.0, mem + 15.0), 1),
            disk_used_pct=round(disk, 2),
            power_w=round(power, 2),
            camera_ok=camera_ok,
        )
    elif spec.kind == DeviceKind.GATEWAY:
        metrics.update(
            cpu_temp_c=round(cpu, 1),
            mem_used_pct=round(mem, 1),
            disk_used_pct=round(disk, 2),
            power_w=round(6.0 + 3.0 * activity + gauss(0, 0.2), 2),
        )
    else:
        metrics.update(
            cpu_temp_c=round(cpu, 1),
            mem_used_pct=round(mem * 0.6, 1),
            power_w=round(1.2 + 0.4 * activity + gauss(0, 0.05), 2),
        )
    offset = CLOCK_SKEW_SECONDS * NS_PER_SECOND if state.has(FaultKind.CLOCK_SKEW) else 0
    new_state = replace(
        state,
        step=state.step + 1,
        cpu_temp_c=cpu,
        gpu_temp_c=gpu,
        confidence=confidence,
        disk_used_pct=disk,
        faults=tuple(f for f in state.faults if f.end_step > state.step + 1),
    )
    return new_state, Sample(metrics=metrics, clock_offset_ns=offset)


MALFORMED_PAYLOADS: tuple[bytes, ...] = (
    b"temp=61.5",  # not JSON
    b'{"metrics": {"cpu_temp_c": "hot"}}',  # a string value
    b'{"metrics": {"cpu_temp_c": NaN}}',  # not a finite number
    b'{"metrics": {"CPU Temp": 61.5}}',  # an invalid metric name
    b'{"metrics": {}}',  # no metrics
    b'{"seq": -1, "metrics": {"cpu_temp_c": 61.5}}',  # a negative seq
    b"[1, 2, 3]",  # not an object
)


def malformed_payload(rng: random.Random) -> bytes:
    """One of the ways a broken device breaks the contract (dead-letter material)."""
    return rng.choice(MALFORMED_PAYLOADS)
