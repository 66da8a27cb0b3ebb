"""Alert records as a pure fold over stored alert events and operators' actions.

The contract says the same (site, device, type) is one alert while it is open: a repeat raise
updates it (count, last value, last time), the device's `cleared` closes it, and so does an
operator's resolve. Folding the stored events, instead of keeping alert state in the ingest,
means replicas and redeliveries cannot create a duplicate or lose an alert: the same events
always fold to the same records. The fold runs in time order of the events' own timestamps,
so a store-and-forward replay that arrives late lands where it belongs.

Operators' actions are on the servers' clock, events on the devices': the two are never
compared. An action applies to the alert it names by id, whenever the device's clock says
that alert happened; it is placed among the events by the time the ingest received them
(`received_ns`), so a raise received after an operator's resolve opens a new alert. The fold
starts at the beginning of the stored history (the state bucket keeps alert events forever),
so an alert's id, built from its opening raise, never depends on a query window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from statistics import median

from edgewatch.models import SEVERITIES

ACTION_ACK = "ack"
ACTION_RESOLVE = "resolve"
ACTION_COMMENT = "comment"
ACTIONS: tuple[str, ...] = (ACTION_ACK, ACTION_RESOLVE, ACTION_COMMENT)
MAX_NOTE_CHARS = 1000


class AlertState(StrEnum):
    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class StoredAlertEvent:
    """One `alert_event` point as read back from the store."""

    site: str
    device: str
    type: str
    ts_ns: int
    severity: str
    state: str
    message: str = ""
    value: float | None = None
    received_ns: int | None = None

    @property
    def heard_ns(self) -> int:
        """When the ingest received it (its clock); the event's own time if not recorded."""
        return self.received_ns if self.received_ns is not None else self.ts_ns


@dataclass(frozen=True, slots=True)
class AlertAction:
    """One operator action on an alert, as stored in `alert_action`."""

    alert_id: str
    action: str
    user: str
    ts_ns: int
    note: str = ""
    snooze_until_ns: int = 0


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    ts_ns: int
    what: str
    by: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class AlertRecord:
    alert_id: str
    site: str
    device: str
    type: str
    severity: str
    opened_ns: int
    last_ns: int
    count: int
    message: str
    last_value: float | None
    closed_ns: int | None = None
    closed_by: str | None = None
    acknowledged_ns: int | None = None
    acknowledged_by: str | None = None
    snoozed_until_ns: int | None = None
    history: tuple[HistoryEntry, ...] = field(default=())

    @property
    def is_open(self) -> bool:
        return self.closed_ns is None

    def state_at(self, now_ns: int) -> AlertState:
        """Review state: a snoozed acknowledgement lapses, and the alert notifies again."""
        if self.closed_ns is not None:
            return AlertState.RESOLVED
        if self.acknowledged_ns is None:
            return AlertState.ACTIVE
        if self.snoozed_until_ns is not None and now_ns >= self.snoozed_until_ns:
            return AlertState.ACTIVE
        return AlertState.ACKNOWLEDGED


def alert_id(site: str, device: str, alert_type: str, opened_ns: int) -> str:
    """The stable identity of one alert: its key and the time it was first raised."""
    return f"{site}/{device}/{alert_type}/{opened_ns}"


def severity_rank(severity: str) -> int:
    """0 for critical, growing as severity falls; unknown severities sort last."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def fold_alerts(
    events: Iterable[StoredAlertEvent], actions: Iterable[AlertAction] = ()
) -> list[AlertRecord]:
    """Fold events and actions into alert records, newest opened first.

    Events fold in the order of their own timestamps. Before each event, the actions taken
    before the ingest received it apply (server clock against server clock); an action
    whose alert does not exist yet waits for it, and whatever remains at the end applies to
    the alert it names, whatever the devices' clocks said. Actions on alerts that are not
    in the events are left out.
    """
    ordered = sorted(events, key=lambda e: (e.ts_ns, e.heard_ns))
    queue = deque(sorted(actions, key=lambda a: a.ts_ns))
    waiting: dict[str, list[AlertAction]] = {}
    open_by_key: dict[tuple[str, str, str], str] = {}
    records: dict[str, AlertRecord] = {}

    def act(action: AlertAction) -> None:
        rec = records.get(action.alert_id)
        if rec is None:
            waiting.setdefault(action.alert_id, []).append(action)
        else:
            records[action.alert_id] = _apply_action(rec, action, open_by_key)

    for item in ordered:
        # At equal times an event comes before an action, so an action can see its alert.
        while queue and queue[0].ts_ns < item.heard_ns:
            act(queue.popleft())
        key = (item.site, item.device, item.type)
        current_id = open_by_key.get(key)
        if item.state == "cleared":
            _close_by_device(records, open_by_key, key, item)
            continue
        if current_id is None:
            new_id = alert_id(item.site, item.device, item.type, item.ts_ns)
            if new_id in records:
                # The same raise stored twice (same key and time): one alert, counted once.
                continue
            records[new_id] = AlertRecord(
                alert_id=new_id,
                site=item.site,
                device=item.device,
                type=item.type,
                severity=item.severity,
                opened_ns=item.ts_ns,
                last_ns=item.ts_ns,
                count=1,
                message=item.message,
                last_value=item.value,
                history=(HistoryEntry(item.ts_ns, "raised", "device", item.message),),
            )
            open_by_key[key] = new_id
            # Actions taken "before" their alert reached us (the servers' clocks differ a
            # little): they still name it, so they apply now.
            for early in waiting.pop(new_id, []):
                act(early)
        else:
            rec = records[current_id]
            records[current_id] = replace(
                rec,
                # A repeat may escalate; the record shows the worst severity seen.
                severity=min(rec.severity, item.severity, key=severity_rank),
                last_ns=max(rec.last_ns, item.ts_ns),
                count=rec.count + 1,
                message=item.message or rec.message,
                last_value=item.value if item.value is not None else rec.last_value,
            )
    # Actions after the last event received, and actions on alerts whose events a device
    # stamped ahead of the servers' clock: each applies to the alert it names.
    while queue:
        act(queue.popleft())
    return sorted(records.values(), key=lambda r: r.opened_ns, reverse=True)


def _close_by_device(
    records: dict[str, AlertRecord],
    open_by_key: dict[tuple[str, str, str], str],
    key: tuple[str, str, str],
    item: StoredAlertEvent,
) -> None:
    """A device's `cleared` closes the open alert of its key (if any)."""
    current_id = open_by_key.pop(key, None)
    if current_id is None:
        return
    rec = records[current_id]
    records[current_id] = replace(
        rec,
        closed_ns=item.ts_ns,
        closed_by="device",
        last_ns=item.ts_ns,
        history=(*rec.history, HistoryEntry(item.ts_ns, "cleared", "device")),
    )


def _apply_action(
    rec: AlertRecord, action: AlertAction, open_by_key: dict[tuple[str, str, str], str]
) -> AlertRecord:
    entry = HistoryEntry(action.ts_ns, action.action, action.user, action.note)
    if action.action == ACTION_ACK and rec.is_open:
        snooze = action.snooze_until_ns or None
        what = "acknowledged" if snooze is None else "acknowledged (snoozed)"
        return replace(
            rec,
            acknowledged_ns=action.ts_ns,
            acknowledged_by=action.user,
            snoozed_until_ns=snooze,
            history=(*rec.history, replace(entry, what=what)),
        )
    if action.action == ACTION_RESOLVE and rec.is_open:
        open_by_key.pop((rec.site, rec.device, rec.type), None)
        return replace(
            rec,
            closed_ns=action.ts_ns,
            closed_by=action.user,
            history=(*rec.history, replace(entry, what="resolved")),
        )
    if action.action == ACTION_COMMENT:
        return replace(rec, history=(*rec.history, replace(entry, what="comment")))
    # An ack or resolve of an already closed alert changes nothing but is still on record.
    return replace(rec, history=(*rec.history, replace(entry, what=f"{action.action} (no-op)")))


@dataclass(frozen=True, slots=True)
class ReviewStats:
    acknowledged: int
    resolved: int
    median_time_to_ack_s: float | None
    median_time_to_resolve_s: float | None


def review_stats(records: Sequence[AlertRecord]) -> ReviewStats:
    """Time-to-acknowledge and time-to-resolve over the given alerts."""
    to_ack = [
        (r.acknowledged_ns - r.opened_ns) / 1e9 for r in records if r.acknowledged_ns is not None
    ]
    to_resolve = [(r.closed_ns - r.opened_ns) / 1e9 for r in records if r.closed_ns is not None]
    return ReviewStats(
        acknowledged=len(to_ack),
        resolved=len(to_resolve),
        median_time_to_ack_s=median(to_ack) if to_ack else None,
        median_time_to_resolve_s=median(to_resolve) if to_resolve else None,
    )


def noisiest_types(records: Sequence[AlertRecord], limit: int = 10) -> list[tuple[str, int]]:
    """Alert types by number of raises (repeats included), most first."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r.type] = counts.get(r.type, 0) + r.count
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


def validate_action(action: str, note: str, user: str) -> None:
    """Refuse an action the review workflow does not know, or a note that is too long."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    if not user.strip():
        raise ValueError("an alert action needs the acting user")
    if len(note) > MAX_NOTE_CHARS:
        raise ValueError(f"the note is {len(note)} characters; the limit is {MAX_NOTE_CHARS}")
