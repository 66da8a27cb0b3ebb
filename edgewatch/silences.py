"""Silences and maintenance windows: a pure fold over their audit events, and matching.

Part of the shared core: the dashboard creates them (and shows MAINTENANCE), the alerter
obeys them; both read the same events from the ops bucket, so neither imports the other.
A silence mutes notifications of matching alerts (the alerts are still recorded); a
maintenance window also stops `device_offline` for its devices. One-off windows have a start
and an end; recurring ones an RFC 5545 RRULE or a 5-field cron expression (when each
occurrence starts, in UTC) and a duration. A cron expression is stored as the operator wrote
it and read as the RRULE it means (`recurrence_rrule`). Every change (create, expire)
is an event with who and why, which is also the audit trail. A silence may also match on
device labels (`ring=canary`, all terms must hold), judged against the device's effective
labels (`edgewatch.labels`: its status labels with operators' label actions applied).
"""

from __future__ import annotations

import fnmatch
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from dateutil.rrule import rrulestr

from edgewatch.labels import Selector, parse_selector, selector_text
from edgewatch.labels import matches as labels_match
from edgewatch.schema import FieldValue, line

KIND_SILENCE = "silence"
KIND_MAINTENANCE = "maintenance"
Kind = Literal["silence", "maintenance"]
ACTION_CREATE = "create"
ACTION_EXPIRE = "expire"
NS_PER_SECOND = 1_000_000_000
MAX_REASON_CHARS = 1000
_PATTERN = re.compile(r"^[A-Za-z0-9_.*?\[\]-]{0,64}$")


@dataclass(frozen=True, slots=True)
class Silence:
    silence_id: str
    kind: str
    created_by: str
    reason: str
    created_ns: int
    starts_ns: int
    ends_ns: int
    site: str = ""
    device: str = ""
    type: str = ""
    rrule: str = ""
    duration_s: float = 0.0
    expired_ns: int | None = None
    expired_by: str | None = None
    # Label matcher (sorted key=value pairs, all must hold); empty matches any device.
    labels: Selector = ()

    def matches(
        self,
        site: str,
        device: str,
        alert_type: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> bool:
        """Empty matchers match anything; site, device, type are shell-style patterns; a
        label matcher needs the device's effective labels (none known: no match)."""
        return (
            _glob(self.site, site)
            and _glob(self.device, device)
            and (not alert_type or _glob(self.type, alert_type))
            and labels_match(labels or {}, self.labels)
        )

    def active_at(self, now_ns: int) -> bool:
        if self.expired_ns is not None and now_ns >= self.expired_ns:
            return False
        if now_ns < self.starts_ns or now_ns >= self.ends_ns:
            return False
        if not self.rrule:
            return True
        return _in_occurrence(self, now_ns)

    def over_at(self, now_ns: int) -> bool:
        """Whether it can never be active again (expired early, or past its end)."""
        return now_ns >= self.ends_ns or (self.expired_ns is not None and now_ns >= self.expired_ns)


def _glob(pattern: str, value: str) -> bool:
    return not pattern or fnmatch.fnmatchcase(value, pattern)


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / NS_PER_SECOND, tz=UTC)


# cron's fields, in order: (name, RRULE part, lowest, highest).
_CRON_FIELDS = (
    ("minute", "BYMINUTE", 0, 59),
    ("hour", "BYHOUR", 0, 23),
    ("day of month", "BYMONTHDAY", 1, 31),
    ("month", "BYMONTH", 1, 12),
    ("day of week", "BYDAY", 0, 7),
)
_WEEKDAYS = ("SU", "MO", "TU", "WE", "TH", "FR", "SA", "SU")
_CRON_NAMES = {
    **{name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))},
    **{
        name: i + 1
        for i, name in enumerate(
            ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
        )
    },
}


def is_cron(text: str) -> bool:
    """Five whitespace-separated fields and no `=`: a cron expression, not an RRULE."""
    return "=" not in text and len(text.split()) == 5


def _cron_number(token: str, name: str, low: int, high: int) -> int:
    value = _CRON_NAMES.get(token.lower()) if not token.isdigit() else int(token)
    if value is None or not low <= value <= high:
        raise ValueError(f"cron {name} {token!r}: a number from {low} to {high}")
    return value


def _cron_values(field: str, name: str, low: int, high: int) -> list[int]:
    """One cron field (lists, ranges, steps, names, *) as the sorted values it allows."""
    values: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ValueError(f"cron {name} step {step_text!r}: a whole number above 0")
        if span == "*":
            first, last = low, high
        elif "-" in span:
            a, _, b = span.partition("-")
            first, last = _cron_number(a, name, low, high), _cron_number(b, name, low, high)
        else:
            first = _cron_number(span, name, low, high)
            last = high if step else first
        if first > last:
            raise ValueError(f"cron {name} {part!r}: the range runs backwards")
        values.update(range(first, last + 1, step or 1))
    return sorted(values)


def recurrence_rrule(text: str) -> str:
    """The RRULE a recurrence means: an RRULE as given, a cron expression converted.

    `m h dom mon dow` becomes FREQ=MINUTELY;BYSECOND=0 narrowed by BYMINUTE, BYHOUR, BYMONTHDAY,
    BYMONTH, BYDAY (a field left `*` adds nothing). cron runs a job when either day field
    matches if both are restricted, an RRULE only when both do: such an expression is
    refused rather than read differently.
    """
    if not is_cron(text):
        return text
    fields = text.split()
    if fields[2] != "*" and fields[4] != "*":
        raise ValueError(
            f"cron {text!r}: restrict the day of month or the day of week, not both "
            "(cron would match either; write two windows)"
        )
    parts = ["FREQ=MINUTELY", "BYSECOND=0"]
    for field, (name, key, low, high) in zip(fields, _CRON_FIELDS, strict=True):
        if field == "*":
            continue
        values = _cron_values(field, name, low, high)
        if key == "BYDAY":
            days = list(dict.fromkeys(_WEEKDAYS[v] for v in values))
            parts.append(f"BYDAY={','.join(days)}")
        else:
            parts.append(f"{key}={','.join(str(v) for v in values)}")
    return ";".join(parts)


def _in_occurrence(silence: Silence, now_ns: int) -> bool:
    rule = rrulestr(recurrence_rrule(silence.rrule), dtstart=_dt(silence.starts_ns))
    last = rule.before(_dt(now_ns), inc=True)
    if last is None:
        return False
    return _dt(now_ns) < last + timedelta(seconds=silence.duration_s)


def _check_who_and_why(created_by: str, reason: str) -> None:
    if not created_by.strip():
        raise ValueError("a silence needs the user who creates it")
    if not reason.strip():
        raise ValueError("a silence needs a reason (why it is muted)")
    if len(reason) > MAX_REASON_CHARS:
        raise ValueError(f"the reason is {len(reason)} characters; the limit is {MAX_REASON_CHARS}")


def _check_matchers(site: str, device: str, alert_type: str, labels: Selector) -> None:
    for name, value in (("site", site), ("device", device), ("type", alert_type)):
        if not _PATTERN.match(value):
            raise ValueError(f"{name} {value!r}: letters, digits, _ . - and the wildcards * ? []")
    if not (site or device or alert_type or labels):
        raise ValueError(
            "give at least one matcher (site, device, type or labels): no fleet-wide mute"
        )


def _check_recurrence(rrule: str, starts_ns: int, duration_s: float) -> None:
    if duration_s <= 0:
        raise ValueError("a recurring window needs a duration (how long each occurrence is)")
    rule = recurrence_rrule(rrule)  # a cron expression's own error names its field
    try:
        rrulestr(rule, dtstart=_dt(starts_ns))
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"repeats {rrule!r} is neither an RFC 5545 RRULE nor a 5-field cron expression: {exc}"
        ) from exc


def new_silence(
    *,
    kind: str,
    created_by: str,
    reason: str,
    now_ns: int,
    starts_ns: int,
    ends_ns: int,
    site: str = "",
    device: str = "",
    alert_type: str = "",
    rrule: str = "",
    duration_s: float = 0.0,
    silence_id: str | None = None,
    labels: str | Sequence[str] = (),
) -> Silence:
    """A validated silence or window; a ValueError naming the field to fix.

    `labels`: `ring=canary,hardware=jetson-orin` or a list of such terms (all must hold)."""
    if kind not in (KIND_SILENCE, KIND_MAINTENANCE):
        raise ValueError(f"kind must be {KIND_SILENCE} or {KIND_MAINTENANCE}, not {kind!r}")
    _check_who_and_why(created_by, reason)
    selector = parse_selector(labels)
    _check_matchers(site, device, alert_type, selector)
    if ends_ns <= starts_ns:
        raise ValueError("the end must come after the start")
    if rrule:
        _check_recurrence(rrule, starts_ns, duration_s)
    return Silence(
        silence_id=silence_id or uuid.uuid4().hex[:12],
        kind=kind,
        created_by=created_by,
        reason=reason,
        created_ns=now_ns,
        starts_ns=starts_ns,
        ends_ns=ends_ns,
        site=site,
        device=device,
        type=alert_type,
        rrule=rrule,
        duration_s=duration_s,
        labels=selector,
    )


@dataclass(frozen=True, slots=True)
class SilenceEvent:
    """One stored change: a create carries the whole silence, an expire only id, who, why."""

    action: str
    ts_ns: int
    silence: Silence | None = None
    silence_id: str = ""
    user: str = ""
    reason: str = ""


def fold_silences(events: Iterable[SilenceEvent]) -> list[Silence]:
    """All silences and windows with their expiry applied, newest created first."""
    by_id: dict[str, Silence] = {}
    for event in sorted(events, key=lambda e: e.ts_ns):
        if event.action == ACTION_CREATE and event.silence is not None:
            by_id[event.silence.silence_id] = event.silence
        elif event.action == ACTION_EXPIRE and event.silence_id in by_id:
            current = by_id[event.silence_id]
            if current.expired_ns is None:
                by_id[event.silence_id] = replace(
                    current, expired_ns=event.ts_ns, expired_by=event.user
                )
    return sorted(by_id.values(), key=lambda s: s.created_ns, reverse=True)


def silenced(
    silences: Iterable[Silence],
    site: str,
    device: str,
    alert_type: str,
    now_ns: int,
    *,
    labels: Mapping[str, str] | None = None,
) -> Silence | None:
    """The first active silence or window that mutes this alert, if any (`labels`: the
    device's effective labels, for silences with a label matcher)."""
    for s in silences:
        if s.active_at(now_ns) and s.matches(site, device, alert_type, labels):
            return s
    return None


def in_maintenance(
    silences: Iterable[Silence],
    site: str,
    device: str,
    now_ns: int,
    labels: Mapping[str, str] | None = None,
) -> bool:
    """Whether a device is inside an active maintenance window (shown as MAINTENANCE)."""
    return any(
        s.kind == KIND_MAINTENANCE
        and s.active_at(now_ns)
        and s.matches(site, device, labels=labels)
        for s in silences
    )


# ------------------------------------------------------------------ stored form (ops bucket)

MEASUREMENT_SILENCE = "silence"


def silence_line(event: SilenceEvent) -> str:
    """One `silence` point: tag kind; the whole silence on create, id/user/reason on expire."""
    s = event.silence
    if event.action == ACTION_CREATE and s is not None:
        fields: dict[str, FieldValue | None] = {
            "action": ACTION_CREATE,
            "id": s.silence_id,
            "user": s.created_by,
            "reason": s.reason,
            "starts_ns": s.starts_ns,
            "ends_ns": s.ends_ns,
            "site": s.site,
            "device": s.device,
            "type": s.type,
            "rrule": s.rrule,
            "duration_s": float(s.duration_s),
            "labels": selector_text(s.labels) or None,
        }
        return line(MEASUREMENT_SILENCE, {"kind": s.kind}, fields, event.ts_ns)
    fields = {
        "action": ACTION_EXPIRE,
        "id": event.silence_id,
        "user": event.user,
        "reason": event.reason,
    }
    return line(MEASUREMENT_SILENCE, {"kind": "change"}, fields, event.ts_ns)


def parse_silence_rows(rows: Iterable[Mapping[str, Any]]) -> list[SilenceEvent]:
    """Rows of the pivoted `silence` query (one per point, `time_ns` exact) into events."""
    events: list[SilenceEvent] = []
    for row in rows:
        ts = int(row.get("time_ns") or 0)
        action = str(row.get("action") or "")
        sid = str(row.get("id") or "")
        if not sid:
            continue
        if action == ACTION_CREATE:
            silence = Silence(
                silence_id=sid,
                kind=str(row.get("kind") or KIND_SILENCE),
                created_by=str(row.get("user") or ""),
                reason=str(row.get("reason") or ""),
                created_ns=ts,
                starts_ns=int(row.get("starts_ns") or 0),
                ends_ns=int(row.get("ends_ns") or 0),
                site=str(row.get("site") or ""),
                device=str(row.get("device") or ""),
                type=str(row.get("type") or ""),
                rrule=str(row.get("rrule") or ""),
                duration_s=float(row.get("duration_s") or 0.0),
                labels=_stored_selector(row.get("labels")),
            )
            events.append(SilenceEvent(ACTION_CREATE, ts, silence, sid, silence.created_by))
        elif action == ACTION_EXPIRE:
            events.append(
                SilenceEvent(
                    ACTION_EXPIRE,
                    ts,
                    None,
                    sid,
                    str(row.get("user") or ""),
                    str(row.get("reason") or ""),
                )
            )
    return events


def _stored_selector(value: Any) -> Selector:
    """A stored label matcher; none on silences stored before labels existed. One that no
    longer reads is kept as a matcher no device satisfies: it never widens the mute."""
    if not isinstance(value, str) or not value:
        return ()
    try:
        return parse_selector(value)
    except ValueError:
        return (("", value),)
