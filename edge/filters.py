"""edge room: what an edge device sends, decided on the device. Pure: values in, values out.

Two filters, both over frozen state that the caller threads through:

- `deadband`: a metric is sent when it moved more than its band away from the value last sent,
  or when it was last sent `heartbeat_s` ago or longer. Comparing with the last *sent* value
  (not the previous reading) is what guarantees the receiver never drifts more than one band
  from the truth: slow creep is sent as soon as it adds up to a band.
- `evaluate_alerts`: thresholds with hysteresis. An "above" rule raises when the value goes
  over `threshold` and clears only once it is below `threshold - hysteresis`, so a value
  hovering at the limit gives one raise, not a raise/clear pair per reading. "below" rules
  mirror that. Booleans count as 1 (true) and 0 (false).

Touches nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from edgewatch.contract import is_valid_metric_name
from edgewatch.models import SEVERITIES, MetricValue

NS_PER_SECOND = 1_000_000_000


# ---------------------------------------------------------------------------- deadband


@dataclass(frozen=True, slots=True)
class DeadbandConfig:
    """Bands per metric, in the metric's unit; metrics without a band are always sent.

    `heartbeat_s`: each metric is sent at least this often even when it did not move. Keep it
    below 3 x the device's interval_s so the health model still sees the device ONLINE.
    """

    bands: Mapping[str, float]
    heartbeat_s: float = 60.0

    def __post_init__(self) -> None:
        for name, band in self.bands.items():
            if not is_valid_metric_name(name):
                raise ValueError(f"deadband metric {name!r} is not a valid metric name")
            if not (math.isfinite(band) and band >= 0):
                raise ValueError(f"deadband for {name}: {band!r} must be a number >= 0")
        if not self.heartbeat_s > 0:
            raise ValueError("heartbeat_s must be positive")


@dataclass(frozen=True, slots=True)
class DeadbandState:
    """Per metric: the value last sent and when (ns)."""

    sent: Mapping[str, tuple[MetricValue, int]] = field(default_factory=dict)


def deadband(
    config: DeadbandConfig,
    state: DeadbandState,
    ts_ns: int,
    metrics: Mapping[str, MetricValue],
) -> tuple[DeadbandState, dict[str, MetricValue]]:
    """The metrics of one reading worth sending, and the state after sending them.

    An empty result means the whole reading can be skipped.
    """
    heartbeat_ns = int(config.heartbeat_s * NS_PER_SECOND)
    out: dict[str, MetricValue] = {}
    for name, value in metrics.items():
        band = config.bands.get(name)
        last = state.sent.get(name)
        if band is None or last is None:
            out[name] = value
            continue
        last_value, last_ns = last
        if ts_ns - last_ns >= heartbeat_ns:
            out[name] = value
        elif isinstance(value, bool) or isinstance(last_value, bool):
            if value != last_value:
                out[name] = value
        elif abs(float(value) - float(last_value)) > band:
            out[name] = value
    if not out:
        return state, out
    sent = dict(state.sent)
    for name, value in out.items():
        sent[name] = (value, ts_ns)
    return DeadbandState(sent=sent), out


# ---------------------------------------------------------------------------- alert rules

Direction = Literal["above", "below"]
AlertState = Literal["raised", "cleared"]


@dataclass(frozen=True, slots=True)
class AlertRule:
    """Raise `type` at `severity` when `metric` crosses `threshold`; clear past the hysteresis."""

    type: str
    severity: str
    metric: str
    threshold: float
    hysteresis: float = 0.0
    direction: Direction = "above"
    unit: str = ""

    def __post_init__(self) -> None:
        if not is_valid_metric_name(self.type):
            raise ValueError(f"alert type {self.type!r} is not a valid name")
        if not is_valid_metric_name(self.metric):
            raise ValueError(f"alert metric {self.metric!r} is not a valid metric name")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} must be one of {', '.join(SEVERITIES)}")
        if not (math.isfinite(self.threshold) and math.isfinite(self.hysteresis)):
            raise ValueError("threshold and hysteresis must be finite")
        if self.hysteresis < 0:
            raise ValueError("hysteresis must be >= 0")

    def is_breached(self, value: float) -> bool:
        if self.direction == "above":
            return value > self.threshold
        return value < self.threshold

    def is_recovered(self, value: float) -> bool:
        if self.direction == "above":
            return value < self.threshold - self.hysteresis
        return value > self.threshold + self.hysteresis


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """A raise or clear to publish as a contract alert event."""

    rule: AlertRule
    state: AlertState
    value: float

    @property
    def message(self) -> str:
        rule = self.rule
        unit = f" {rule.unit}" if rule.unit else ""
        if self.state == "raised":
            side = "above" if rule.direction == "above" else "below"
            return f"{rule.metric} at {self.value:g}{unit}, {side} {rule.threshold:g}{unit}"
        return f"{rule.metric} back at {self.value:g}{unit}"


@dataclass(frozen=True, slots=True)
class AlertRulesState:
    """Which rules (by type) are currently raised."""

    raised: frozenset[str] = frozenset()


def evaluate_alerts(
    rules: tuple[AlertRule, ...],
    state: AlertRulesState,
    metrics: Mapping[str, MetricValue],
) -> tuple[AlertRulesState, list[AlertTransition]]:
    """The raises and clears one reading causes. Metrics absent from the reading change nothing."""
    raised = set(state.raised)
    transitions: list[AlertTransition] = []
    for rule in rules:
        if rule.metric not in metrics:
            continue
        value = float(metrics[rule.metric])
        if rule.type in raised:
            if rule.is_recovered(value):
                raised.discard(rule.type)
                transitions.append(AlertTransition(rule, "cleared", value))
        elif rule.is_breached(value):
            raised.add(rule.type)
            transitions.append(AlertTransition(rule, "raised", value))
    if not transitions:
        return state, transitions
    return replace(state, raised=frozenset(raised)), transitions


# ---------------------------------------------------------------------------- CLI specs

_RULE_SPEC = re.compile(
    r"(?P<type>[a-z][a-z0-9_]*):(?P<severity>[a-z]+):(?P<metric>[a-z][a-z0-9_]*)"
    r"(?P<op>[<>])(?P<threshold>[-+0-9.eE]+)(?:/(?P<hysteresis>[0-9.eE+]+))?"
)


def parse_rule_spec(spec: str) -> AlertRule:
    """`overheat:critical:gpu_temp_c>85/5` -> raise above 85, clear below 80."""
    match = _RULE_SPEC.fullmatch(spec.strip())
    if match is None:
        raise ValueError(
            f"alert rule {spec!r} must look like TYPE:SEVERITY:METRIC>THRESHOLD[/HYSTERESIS]"
            " (e.g. overheat:critical:gpu_temp_c>85/5)"
        )
    try:
        threshold = float(match["threshold"])
        hysteresis = float(match["hysteresis"] or 0.0)
    except ValueError:
        raise ValueError(f"alert rule {spec!r}: threshold and hysteresis must be numbers") from None
    return AlertRule(
        type=match["type"],
        severity=match["severity"],
        metric=match["metric"],
        threshold=threshold,
        hysteresis=hysteresis,
        direction="above" if match["op"] == ">" else "below",
    )


def parse_deadband_spec(spec: str) -> tuple[str, float]:
    """`cpu_temp_c=0.5` -> ("cpu_temp_c", 0.5)."""
    name, sep, band = spec.partition("=")
    try:
        value = float(band)
    except ValueError:
        value = math.nan
    if not sep or not is_valid_metric_name(name) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"deadband {spec!r} must look like METRIC=BAND (e.g. cpu_temp_c=0.5)")
    return name, value
