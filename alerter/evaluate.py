"""alerter room, pure: one evaluation of every rule against the fleet as it is now.

`evaluate(config, fleet, previous, now_ns) -> Evaluation` is value in, value out: the fleet's
current health and readings, each rule instance's previous state, and the time go in; the
new states and the alert events to store come out. The service does the I/O around it.

States follow the pending/firing model: a condition that holds starts PENDING, becomes
FIRING (an alert `raised`) once it held for `for`; a firing alert clears (`cleared`) when the
condition has stopped holding for `keep_firing_for`, with a separate clear threshold so that a
value hovering at the limit does not flap. No data (a metric absent, the ingest silent) keeps
the previous state: a link dropping for seconds must not clear or raise anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from edgewatch.health import DeviceHealth, HealthState
from edgewatch.model_fleet import PSI_THRESHOLD, DriftResult, IntegrityFlag
from edgewatch.rules import (
    SITE_SCOPE_DEVICE,
    SYSTEM_SITE,
    TYPE_DEVICE_OFFLINE,
    TYPE_INGEST_DOWN,
    TYPE_MODEL_DRIFT,
    TYPE_MODEL_INTEGRITY,
    TYPE_SITE_DOWN,
    MetricRule,
    RulesConfig,
)

NS_PER_SECOND = 1_000_000_000
INGEST_DEVICE = "ingest"
DEFAULT_DEVICE_INTERVAL_S = 60.0


class RuleState(StrEnum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"


@dataclass(frozen=True, slots=True)
class InstanceKey:
    """One rule applied to one device (or site, or the system)."""

    rule: str
    site: str
    device: str


@dataclass(frozen=True, slots=True)
class InstanceState:
    state: RuleState
    since_ns: int
    # The last time the condition held (for keep_firing_for).
    last_true_ns: int = 0
    value: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceView:
    """What the alerter knows of one device now."""

    health: DeviceHealth
    model: str | None = None
    interval_s: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    in_maintenance: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def site(self) -> str:
        return self.health.site

    @property
    def device(self) -> str:
        return self.health.device


@dataclass(frozen=True, slots=True)
class FleetInput:
    devices: tuple[DeviceView, ...]
    ingest_silent: bool
    ingest_reason: str = ""
    # Change per second of a metric over a window: (site, device, metric, window_s) -> rate.
    rates: Mapping[tuple[str, str, str, float], float] = field(default_factory=dict)
    # The model fleet, judged by edgewatch.model_fleet as the Models page judges it: drift per
    # device that has confidence readings, and the integrity flags among the devices that
    # report a model hash (`hashed`: the devices that can be judged at all).
    drift: Mapping[tuple[str, str], DriftResult] = field(default_factory=dict)
    integrity: Mapping[tuple[str, str], IntegrityFlag] = field(default_factory=dict)
    hashed: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True, slots=True)
class RuleAlertEvent:
    """An alert event the alerter stores: an ordinary alert_event marked source `rule`."""

    site: str
    device: str
    type: str
    ts_ns: int
    severity: str
    state: str  # raised | cleared
    message: str
    value: float | None = None
    rule: str = ""


@dataclass(frozen=True, slots=True)
class Evaluation:
    states: Mapping[InstanceKey, InstanceState]
    events: tuple[RuleAlertEvent, ...]
    changed: tuple[InstanceKey, ...]


@dataclass(frozen=True, slots=True)
class _Check:
    """One instance's condition this cycle: None means no data."""

    key: InstanceKey
    holds: bool | None
    holds_while_firing: bool | None
    for_s: float
    keep_firing_for_s: float
    severity: str
    message: str
    value: float | None = None
    pending_since_ns: int | None = None


def _event(check: _Check, now_ns: int, state: str, message: str) -> RuleAlertEvent:
    return RuleAlertEvent(
        site=check.key.site,
        device=check.key.device,
        type=check.key.rule,
        ts_ns=now_ns,
        severity=check.severity,
        state=state,
        message=message,
        value=check.value,
        rule=check.key.rule,
    )


def _step_firing(
    check: _Check, prev: InstanceState, now_ns: int
) -> tuple[InstanceState, RuleAlertEvent | None]:
    """A firing instance stays firing until quiet for keep_firing_for."""
    if check.holds_while_firing:
        return InstanceState(RuleState.FIRING, prev.since_ns, now_ns, check.value), None
    quiet_ns = now_ns - (prev.last_true_ns or prev.since_ns)
    if quiet_ns >= check.keep_firing_for_s * NS_PER_SECOND:
        return (
            InstanceState(RuleState.OK, now_ns, prev.last_true_ns, check.value),
            _event(check, now_ns, "cleared", f"{check.key.rule} cleared"),
        )
    return InstanceState(RuleState.FIRING, prev.since_ns, prev.last_true_ns, check.value), None


def _step_holding(
    check: _Check, prev: InstanceState, now_ns: int
) -> tuple[InstanceState, RuleAlertEvent | None]:
    """A condition that holds: pending until it held for `for`, then firing."""
    since = prev.since_ns if prev.state == RuleState.PENDING else now_ns
    if check.pending_since_ns is not None:
        since = min(since, check.pending_since_ns)
    if now_ns - since >= check.for_s * NS_PER_SECOND:
        return (
            InstanceState(RuleState.FIRING, now_ns, now_ns, check.value),
            _event(check, now_ns, "raised", check.message),
        )
    return InstanceState(RuleState.PENDING, since, now_ns, check.value), None


def _step(
    check: _Check, prev: InstanceState | None, now_ns: int
) -> tuple[InstanceState, RuleAlertEvent | None]:
    prev = prev or InstanceState(RuleState.OK, now_ns)
    if check.holds is None:
        return prev, None
    if prev.state == RuleState.FIRING:
        return _step_firing(check, prev, now_ns)
    if check.holds:
        return _step_holding(check, prev, now_ns)
    if prev.state == RuleState.OK:
        return prev, None
    return InstanceState(RuleState.OK, now_ns, prev.last_true_ns, check.value), None


def _device_offline_checks(config: RulesConfig, fleet: FleetInput) -> Iterable[_Check]:
    rule = config.builtins.device_offline
    for d in fleet.devices:
        if not rule.match.matches(d.site, d.device, d.model, d.labels):
            continue
        state = d.health.state
        if fleet.ingest_silent or state == HealthState.UNKNOWN:
            holds: bool | None = None
        else:
            # A device in a maintenance window raises no device_offline (and clears one).
            holds = state == HealthState.OFFLINE and not d.in_maintenance
        interval = d.interval_s or DEFAULT_DEVICE_INTERVAL_S
        yield _Check(
            key=InstanceKey(TYPE_DEVICE_OFFLINE, d.site, d.device),
            holds=holds,
            holds_while_firing=holds,
            for_s=rule.for_s if rule.for_s is not None else 2 * interval,
            keep_firing_for_s=0.0,
            severity=rule.severity,
            message=f"{d.site}/{d.device} is OFFLINE: {d.health.reason}",
            # The timer starts when the device went OFFLINE, not when we first saw it: an
            # alerter restarted mid-outage fires on time.
            pending_since_ns=d.health.since_ns,
        )


def _site_down_checks(config: RulesConfig, fleet: FleetInput) -> Iterable[_Check]:
    rule = config.builtins.site_down
    by_site: dict[str, list[DeviceView]] = {}
    for d in fleet.devices:
        if not d.in_maintenance:
            by_site.setdefault(d.site, []).append(d)
    for site, devices in sorted(by_site.items()):
        offline = sum(1 for d in devices if d.health.state == HealthState.OFFLINE)
        share = offline / len(devices)
        holds: bool | None = len(devices) >= rule.min_devices and share >= rule.share
        if fleet.ingest_silent:
            holds = None
        yield _Check(
            key=InstanceKey(TYPE_SITE_DOWN, site, SITE_SCOPE_DEVICE),
            holds=holds,
            holds_while_firing=holds,
            for_s=rule.for_s,
            keep_firing_for_s=0.0,
            severity=rule.severity,
            message=f"site {site} is down: {offline} of {len(devices)} devices OFFLINE",
            value=float(offline),
        )


def _model_drift_checks(config: RulesConfig, fleet: FleetInput) -> Iterable[_Check]:
    rule = config.builtins.model_drift
    for d in fleet.devices:
        result = fleet.drift.get((d.site, d.device))
        if result is None or not rule.match.matches(d.site, d.device, d.model, d.labels):
            continue
        # No verdict (too few readings in a window) keeps the previous state.
        holds = None if result.psi is None else result.drifting
        yield _Check(
            key=InstanceKey(TYPE_MODEL_DRIFT, d.site, d.device),
            holds=holds,
            holds_while_firing=holds,
            for_s=rule.for_s,
            keep_firing_for_s=0.0,
            severity=rule.severity,
            message=(
                f"{d.site}/{d.device} model confidence drifted from its baseline: PSI "
                f"{result.psi or 0.0:.2f} >= {PSI_THRESHOLD} (median bin "
                f"{result.baseline_median} -> {result.recent_median})"
            ),
            value=result.psi,
        )


def _model_integrity_checks(config: RulesConfig, fleet: FleetInput) -> Iterable[_Check]:
    rule = config.builtins.model_integrity
    for d in fleet.devices:
        key = (d.site, d.device)
        if key not in fleet.hashed or not rule.match.matches(d.site, d.device, d.model, d.labels):
            continue
        flag = fleet.integrity.get(key)
        yield _Check(
            key=InstanceKey(TYPE_MODEL_INTEGRITY, d.site, d.device),
            holds=flag is not None,
            holds_while_firing=flag is not None,
            for_s=rule.for_s,
            keep_firing_for_s=0.0,
            severity=rule.severity,
            message=flag.message if flag else f"{d.site}/{d.device} model hash matches",
        )


def _metric_checks(rule: MetricRule, fleet: FleetInput) -> Iterable[_Check]:
    for d in fleet.devices:
        if not rule.match.matches(d.site, d.device, d.model, d.labels):
            continue
        if rule.kind == "rate":
            value = fleet.rates.get((d.site, d.device, rule.metric, rule.window_s))
        else:
            value = d.metrics.get(rule.metric)
        holds = None if value is None else rule.raises(value)
        holding = None if value is None else rule.still_firing(value)
        what = "changes by" if rule.kind == "rate" else "is"
        unit = "/s" if rule.kind == "rate" else ""
        yield _Check(
            key=InstanceKey(rule.name, d.site, d.device),
            holds=holds,
            holds_while_firing=holding,
            for_s=rule.for_s,
            keep_firing_for_s=rule.keep_firing_for_s,
            severity=rule.severity,
            message=rule.message
            or f"{rule.metric} {what} {value}{unit} ({rule.op} {rule.threshold}{unit})",
            value=value,
        )


def _ingest_check(config: RulesConfig, fleet: FleetInput) -> _Check:
    rule = config.builtins.ingest_down
    return _Check(
        key=InstanceKey(TYPE_INGEST_DOWN, SYSTEM_SITE, INGEST_DEVICE),
        holds=fleet.ingest_silent,
        holds_while_firing=fleet.ingest_silent,
        for_s=rule.for_s,
        keep_firing_for_s=0.0,
        severity=rule.severity,
        message=f"the ingest stopped reporting: {fleet.ingest_reason or 'no heartbeat'}",
    )


def evaluate(
    config: RulesConfig,
    fleet: FleetInput,
    previous: Mapping[InstanceKey, InstanceState],
    now_ns: int,
) -> Evaluation:
    """Every rule instance's new state, and the alert events its transitions make."""
    checks: list[_Check] = []
    if config.builtins.device_offline.enabled:
        checks.extend(_device_offline_checks(config, fleet))
    if config.builtins.site_down.enabled:
        checks.extend(_site_down_checks(config, fleet))
    if config.builtins.ingest_down.enabled:
        checks.append(_ingest_check(config, fleet))
    if config.builtins.model_drift.enabled:
        checks.extend(_model_drift_checks(config, fleet))
    if config.builtins.model_integrity.enabled:
        checks.extend(_model_integrity_checks(config, fleet))
    for rule in config.rules:
        checks.extend(_metric_checks(rule, fleet))

    states: dict[InstanceKey, InstanceState] = dict(previous)
    events: list[RuleAlertEvent] = []
    changed: list[InstanceKey] = []
    for check in checks:
        prev = previous.get(check.key)
        new, event = _step(check, prev, now_ns)
        states[check.key] = new
        if event is not None:
            events.append(event)
        moved = prev is None or prev.state != new.state or prev.since_ns != new.since_ns
        # A new instance that is OK has nothing worth storing.
        if moved and not (prev is None and new.state == RuleState.OK):
            changed.append(check.key)
    return Evaluation(states=states, events=tuple(events), changed=tuple(changed))


def rule_summary(
    states: Mapping[InstanceKey, InstanceState], rule_names: Iterable[str]
) -> dict[str, dict[str, int]]:
    """Per rule: how many instances are ok, pending, firing (for the Rules page)."""
    summary = {name: {s.value: 0 for s in RuleState} for name in rule_names}
    for key, st in states.items():
        if key.rule in summary:
            summary[key.rule][st.state.value] += 1
    return summary
