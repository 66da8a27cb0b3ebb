"""The project's own message types: what the rest of the code sees instead of paho's or JSON.

Every value here has been validated against the contract (docs: README "The contract");
constructing them directly (simulator, tests) is allowed, decoding is in `contract.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

MetricValue = float | bool

SEVERITIES: tuple[str, ...] = ("critical", "major", "minor", "warning", "info")
"""Most severe first; the order is used for sorting and roll-ups."""

MessageKind = Literal["telemetry", "alert", "status"]


@dataclass(frozen=True, slots=True)
class Reading:
    """One telemetry reading. `ts_ns` is the device's time when `ts_given`, else receipt time."""

    ts_ns: int
    metrics: Mapping[str, MetricValue]
    seq: int | None = None
    ts_given: bool = True


@dataclass(frozen=True, slots=True)
class Telemetry:
    site: str
    device: str
    readings: tuple[Reading, ...]
    kind: Literal["telemetry"] = field(default="telemetry", init=False)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    site: str
    device: str
    ts_ns: int
    type: str
    severity: str
    state: Literal["raised", "cleared"] = "raised"
    message: str = ""
    value: float | None = None
    ts_given: bool = True
    kind: Literal["alert"] = field(default="alert", init=False)


@dataclass(frozen=True, slots=True)
class StatusEvent:
    site: str
    device: str
    ts_ns: int
    state: Literal["online", "offline"]
    reason: str | None = None
    interval_s: float | None = None
    model: str | None = None
    model_version: str | None = None
    firmware: str | None = None
    lat: float | None = None
    lon: float | None = None
    ts_given: bool = True
    # Contract v1.1: the sha256 of the model file the device runs (64 lowercase hex) and its
    # labels, sorted by key (a tuple, so the event stays hashable and frozen).
    model_sha256: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    kind: Literal["status"] = field(default="status", init=False)


DeviceMessage = Telemetry | AlertEvent | StatusEvent


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a device says about itself: the descriptive fields of its `online` status.

    What its birth carries (`edgewatch.encode.birth_body`, absent values left out) and what a
    reader learns from a `StatusEvent` (`from_status`). `interval_s` None: not said, the
    contract's default of 60 s applies.
    """

    interval_s: float | None = None
    model: str | None = None
    model_version: str | None = None
    firmware: str | None = None
    lat: float | None = None
    lon: float | None = None
    model_sha256: str | None = None
    labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_status(cls, status: StatusEvent) -> DeviceInfo:
        return cls(
            interval_s=status.interval_s,
            model=status.model,
            model_version=status.model_version,
            firmware=status.firmware,
            lat=status.lat,
            lon=status.lon,
            model_sha256=status.model_sha256,
            labels=status.labels,
        )


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that broke the contract, with a reason that says what was wrong."""

    topic: str
    code: str
    reason: str
    payload_excerpt: str
    received_ns: int


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """An MQTT message as the project sees it: converted at the boundary from paho's type.

    `ack_token` is opaque to everything but the MQTT client that made it (paho's mid).
    """

    topic: str
    payload: bytes
    received_ns: int
    ack_token: int = 0
    retained: bool = False
    # The MQTT v5 content type (None: none); contract v1.1 announces gzip payloads with it.
    content_type: str | None = None
