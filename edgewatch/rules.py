"""The alert rules model: what an operator writes in the rules file, validated.

Part of the shared core (no I/O beyond parsing text handed in): the alerter evaluates these
rules and the dashboard's Rules page shows them, so both read the one model. Validation
errors name the rule and the field (`rules[gpu_hot].threshold: ...`), never a traceback.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edgewatch.models import SEVERITIES

TYPE_DEVICE_OFFLINE = "device_offline"
TYPE_SITE_DOWN = "site_down"
TYPE_INGEST_DOWN = "ingest_down"
TYPE_INFLUXDB_DOWN = "influxdb_down"
TYPE_MODEL_DRIFT = "model_drift"
TYPE_MODEL_INTEGRITY = "model_integrity"
BUILTIN_TYPES: tuple[str, ...] = (
    TYPE_DEVICE_OFFLINE,
    TYPE_MODEL_DRIFT,
    TYPE_MODEL_INTEGRITY,
    TYPE_SITE_DOWN,
    TYPE_INGEST_DOWN,
    TYPE_INFLUXDB_DOWN,
)
# Alerts that concern a site or the whole system carry these in place of a device name; a
# real device name cannot start with "_" (contract), so they never collide with a device.
SITE_SCOPE_DEVICE = "_site"
SYSTEM_SITE = "_system"

DEFAULT_RECEIVER = "default"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds from `90`, `90s`, `5m`, `2h`, `1d`; a clear error for anything else."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '2h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2) or "s"]
    else:
        raise ValueError(
            f"{value!r} is not a duration: use seconds or a string like '30s', '5m', '2h'"
        )
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
Severity = Literal["critical", "major", "minor", "warning", "info"]
Op = Literal[">", ">=", "<", "<="]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DeviceMatch(_Strict):
    """Which devices a rule watches: shell-style patterns, any of each list; empty means all."""

    site: tuple[str, ...] = ()
    device: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    # Device groups (contract v1.1 status labels): every key with exactly this value. Written
    # as a mapping (`labels: {ring: canary}`), kept as sorted pairs so the config stays hashable.
    labels: tuple[tuple[str, str], ...] = ()

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_from_mapping(cls, value: object) -> object:
        if isinstance(value, Mapping):
            return tuple(sorted((str(k), str(v)) for k, v in value.items()))
        return value

    def matches(
        self,
        site: str,
        device: str,
        model: str | None,
        labels: Mapping[str, str] | None = None,
    ) -> bool:
        have = labels or {}
        return (
            _any_glob(self.site, site)
            and _any_glob(self.device, device)
            and _any_glob(self.model, model or "")
            and all(have.get(key) == value for key, value in self.labels)
        )


def _any_glob(patterns: Sequence[str], value: str) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(value, p) for p in patterns)


class DeviceOfflineRule(_Strict):
    enabled: bool = True
    severity: Severity = "major"
    # None: twice the device's own reporting interval.
    for_s: Duration | None = Field(None, alias="for")
    match: DeviceMatch = DeviceMatch()


class SiteDownRule(_Strict):
    enabled: bool = True
    severity: Severity = "critical"
    share: float = Field(1.0, gt=0.0, le=1.0)
    min_devices: int = Field(2, ge=1)
    for_s: Duration = Field(0.0, alias="for")


class IngestDownRule(_Strict):
    enabled: bool = True
    severity: Severity = "critical"
    # The health model already waits 3 missed reports; this covers a start-up in progress.
    for_s: Duration = Field(30.0, alias="for")


class ModelDriftRule(_Strict):
    """A device's model confidence drifting from its own baseline (edgewatch.model_fleet:
    PSI >= 0.2, the last third of `window` against its first third), as the Models page
    lists it."""

    enabled: bool = True
    severity: Severity = "major"
    for_s: Duration = Field(0.0, alias="for")
    window_s: Duration = Field(3600.0, alias="window", gt=0.0)
    match: DeviceMatch = DeviceMatch()


class ModelIntegrityRule(_Strict):
    """A device whose model hash differs from its version's registered release, or from the
    majority of the fleet on that version (edgewatch.model_fleet.integrity_flags)."""

    enabled: bool = True
    severity: Severity = "critical"
    for_s: Duration = Field(0.0, alias="for")
    match: DeviceMatch = DeviceMatch()


class Builtins(_Strict):
    device_offline: DeviceOfflineRule = Field(
        default_factory=lambda: DeviceOfflineRule.model_validate({})
    )
    site_down: SiteDownRule = Field(default_factory=lambda: SiteDownRule.model_validate({}))
    ingest_down: IngestDownRule = Field(default_factory=lambda: IngestDownRule.model_validate({}))
    model_drift: ModelDriftRule = Field(default_factory=lambda: ModelDriftRule.model_validate({}))
    model_integrity: ModelIntegrityRule = Field(
        default_factory=lambda: ModelIntegrityRule.model_validate({})
    )


class MetricRule(_Strict):
    """A user rule on one metric of each matching device: its value, or its rate of change."""

    name: str
    kind: Literal["threshold", "rate"] = "threshold"
    metric: str
    op: Op = ">"
    threshold: float
    clear_threshold: float | None = None
    # Rate rules: the change per second, measured over this window.
    window_s: Duration = Field(300.0, alias="window")
    for_s: Duration = Field(0.0, alias="for")
    keep_firing_for_s: Duration = Field(0.0, alias="keep_firing_for")
    severity: Severity = "major"
    message: str = ""
    match: DeviceMatch = DeviceMatch()

    @model_validator(mode="after")
    def _check(self) -> MetricRule:
        if not NAME_PATTERN.match(self.name):
            raise ValueError(
                f"name {self.name!r} must match {NAME_PATTERN.pattern} (it is the alert type)"
            )
        if self.name in BUILTIN_TYPES:
            raise ValueError(f"name {self.name!r} is a built-in rule; pick another name")
        if not NAME_PATTERN.match(self.metric):
            raise ValueError(f"metric {self.metric!r} is not a metric name of the contract")
        if self.clear_threshold is not None:
            above = self.op in (">", ">=")
            if (above and self.clear_threshold > self.threshold) or (
                not above and self.clear_threshold < self.threshold
            ):
                side = "at or below" if above else "at or above"
                raise ValueError(
                    f"clear_threshold {self.clear_threshold} must be {side} the threshold "
                    f"{self.threshold} for op {self.op!r} (hysteresis)"
                )
        return self

    def raises(self, value: float) -> bool:
        return _compare(value, self.op, self.threshold)

    def still_firing(self, value: float) -> bool:
        """While firing the alert holds until the value crosses the clear threshold."""
        if self.clear_threshold is None:
            return self.raises(value)
        return _compare(value, self.op, self.clear_threshold)


def _compare(value: float, op: str, limit: float) -> bool:
    if op == ">":
        return value > limit
    if op == ">=":
        return value >= limit
    if op == "<":
        return value < limit
    return value <= limit


class Receiver(_Strict):
    """Where notifications go: Apprise URLs read from an environment variable (never git)."""

    name: str
    urls_env: str

    @model_validator(mode="after")
    def _check(self) -> Receiver:
        if not re.match(r"^[A-Za-z0-9_-]{1,64}$", self.name):
            raise ValueError(f"receiver name {self.name!r}: letters, digits, _ and - only")
        if not re.match(r"^[A-Z_][A-Z0-9_]*$", self.urls_env):
            raise ValueError(f"urls_env {self.urls_env!r} must name an environment variable")
        return self


class RouteMatch(_Strict):
    """Empty lists match anything; `severity` lists the severities the route takes."""

    severity: tuple[Severity, ...] = ()
    site: tuple[str, ...] = ()
    type: tuple[str, ...] = ()
    source: tuple[Literal["device", "rule"], ...] = ()

    def matches(self, *, severity: str, site: str, alert_type: str, source: str) -> bool:
        return (
            (not self.severity or severity in self.severity)
            and _any_glob(self.site, site)
            and _any_glob(self.type, alert_type)
            and (not self.source or source in self.source)
        )


class Route(_Strict):
    match: RouteMatch = RouteMatch()
    receivers: tuple[str, ...] = (DEFAULT_RECEIVER,)
    group_wait_s: Duration = Field(0.0, alias="group_wait")
    group_interval_s: Duration = Field(0.0, alias="group_interval")
    # 0: never repeat. Repeats stop once the alert is acknowledged (resume when a snooze lapses).
    repeat_interval_s: Duration = Field(0.0, alias="repeat_interval")
    escalate_after_s: Duration | None = Field(None, alias="escalate_after")
    escalate_to: tuple[str, ...] = ()
    # Keep looking at the next routes after this one matched.
    continue_: bool = Field(False, alias="continue")


def default_route() -> Route:
    """EDGEWATCH_NOTIFY_URLS gets every alert of severity major or worse, raised and resolved."""
    return Route.model_validate(
        {"match": {"severity": ["critical", "major"]}, "receivers": [DEFAULT_RECEIVER]}
    )


class RulesConfig(_Strict):
    builtins: Builtins = Field(default_factory=Builtins)
    rules: tuple[MetricRule, ...] = ()
    receivers: tuple[Receiver, ...] = ()
    routes: tuple[Route, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> RulesConfig:
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(dupes)}")
        known = {DEFAULT_RECEIVER} | {r.name for r in self.receivers}
        for i, route in enumerate(self.routes):
            for name in (*route.receivers, *route.escalate_to):
                if name not in known:
                    raise ValueError(
                        f"routes[{i}]: receiver {name!r} is not declared under `receivers` "
                        f"(known: {', '.join(sorted(known))})"
                    )
            if route.escalate_to and route.escalate_after_s is None:
                raise ValueError(f"routes[{i}]: escalate_to needs escalate_after")
        return self

    @property
    def effective_routes(self) -> tuple[Route, ...]:
        return self.routes or (default_route(),)

    def rule_types(self) -> frozenset[str]:
        """The alert types the alerter raises (source `rule`); all others come from devices."""
        return frozenset((*BUILTIN_TYPES, *(r.name for r in self.rules)))

    def rule_names(self) -> tuple[str, ...]:
        enabled = [
            name
            for name, on in (
                (TYPE_DEVICE_OFFLINE, self.builtins.device_offline.enabled),
                (TYPE_SITE_DOWN, self.builtins.site_down.enabled),
                (TYPE_INGEST_DOWN, self.builtins.ingest_down.enabled),
                (TYPE_MODEL_DRIFT, self.builtins.model_drift.enabled),
                (TYPE_MODEL_INTEGRITY, self.builtins.model_integrity.enabled),
            )
            if on
        ]
        return (*enabled, *(r.name for r in self.rules))


class RulesFileError(ValueError):
    """A rules file that cannot be used; the message names the rule and field to fix."""


def _where(loc: Sequence[int | str], data: Mapping[str, Any]) -> str:
    parts: list[str] = []
    node: Any = data
    for i, part in enumerate(loc):
        name = str(part)
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            item = node[part]
            label = item.get("name") if isinstance(item, dict) else None
            parts[-1] = f"{parts[-1]}[{label or part}]" if parts else f"[{part}]"
            node = item
            continue
        if i and isinstance(part, str) and part.startswith(("function-", "model-")):
            continue
        parts.append(name)
        node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts) or "file"


def parse_rules(text: str, source: str = "rules file") -> RulesConfig:
    """A validated RulesConfig from YAML text, or a RulesFileError naming rule and field."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise RulesFileError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RulesFileError(f"{source}: the top level must be a mapping (rules:, routes:, ...)")
    try:
        return RulesConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            msg = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"{_where(error['loc'], data)}: {msg}")
        raise RulesFileError(f"{source}: " + "; ".join(lines)) from None


def severity_at_least(severity: str, floor: str) -> bool:
    return SEVERITIES.index(severity) <= SEVERITIES.index(floor)
