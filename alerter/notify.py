"""alerter room, pure: which notifications are due, and the delivery log folded from its records.

Every notification has an idempotency key derived only from what it is about (alert id,
receiver, target, kind, repeat number), so re-planning after a restart finds the same key
in the log and does not send it again, and a retry carries the same key as the first try.
The log is append-only (`notification` points in the ops bucket): one `pending` record
before the first send, then one record per attempt (`sent`, `failed`), or `suppressed`
(silenced, inhibited) instead of any send.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from edgewatch.alerts import AlertRecord, AlertState
from edgewatch.rules import TYPE_DEVICE_OFFLINE, TYPE_SITE_DOWN, Route, RulesConfig
from edgewatch.silences import Silence, silenced

NS_PER_SECOND = 1_000_000_000
KIND_RAISED = "raised"
KIND_REPEAT = "repeat"
KIND_ESCALATION = "escalation"
KIND_RESOLVED = "resolved"
STATUS_PENDING = "pending"
STATUS_SENT = "sent"
STATUS_FAILED = "failed"
STATUS_SUPPRESSED = "suppressed"
STATUS_ABANDONED = "abandoned"
DONE_STATUSES = frozenset({STATUS_SENT, STATUS_SUPPRESSED, STATUS_ABANDONED})


def idempotency_key(alert_id: str, receiver: str, target: int, kind: str) -> str:
    digest = hashlib.sha256(f"{alert_id}|{receiver}|{target}|{kind}".encode()).hexdigest()
    return f"ew-{digest[:24]}"


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification to one receiver target, as recorded before it is sent."""

    key: str
    alert_id: str
    site: str
    device: str
    type: str
    severity: str
    receiver: str
    target: int
    kind: str
    title: str
    body: str
    created_ns: int
    status: str = STATUS_PENDING
    attempts: int = 0
    last_attempt_ns: int = 0
    error: str = ""
    # The raises of one group_interval group planned in one cycle share a batch: they are
    # sent as one message (`merge_batches`); "" for a notification sent on its own.
    batch: str = ""


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One stored `notification` point."""

    key: str
    ts_ns: int
    status: str
    attempt: int = 0
    error: str = ""
    alert_id: str = ""
    site: str = ""
    device: str = ""
    type: str = ""
    severity: str = ""
    receiver: str = ""
    target: int = 0
    kind: str = ""
    title: str = ""
    body: str = ""
    batch: str = ""


def fold_log(records: Iterable[LogRecord]) -> dict[str, Notification]:
    """Each key's notification with its latest status and how many attempts it had."""
    log: dict[str, Notification] = {}
    for r in sorted(records, key=lambda r: r.ts_ns):
        current = log.get(r.key)
        if current is None:
            log[r.key] = Notification(
                key=r.key,
                alert_id=r.alert_id,
                site=r.site,
                device=r.device,
                type=r.type,
                severity=r.severity,
                receiver=r.receiver,
                target=r.target,
                kind=r.kind,
                title=r.title,
                body=r.body,
                created_ns=r.ts_ns,
                status=r.status,
                attempts=r.attempt,
                last_attempt_ns=r.ts_ns if r.attempt else 0,
                error=r.error,
                batch=r.batch,
            )
            continue
        if current.status in DONE_STATUSES:
            # Once delivered it stays delivered, whatever a late duplicate record says.
            continue
        log[r.key] = replace(
            current,
            status=r.status,
            attempts=max(current.attempts, r.attempt),
            last_attempt_ns=r.ts_ns if r.attempt else current.last_attempt_ns,
            error=r.error,
        )
    return log


def retry_delay_s(attempts: int, base_s: float, max_s: float) -> float:
    """Exponential backoff after `attempts` failed tries."""
    if attempts <= 0:
        return 0.0
    return float(min(max_s, base_s * 2 ** (attempts - 1)))


def due_for_delivery(
    log: Mapping[str, Notification],
    now_ns: int,
    *,
    retry_base_s: float,
    retry_max_s: float,
) -> list[Notification]:
    """Notifications recorded but not delivered whose next try is due, oldest first."""
    due = []
    for n in log.values():
        if n.status not in (STATUS_PENDING, STATUS_FAILED):
            continue
        wait_ns = retry_delay_s(n.attempts, retry_base_s, retry_max_s) * NS_PER_SECOND
        if n.attempts == 0 or now_ns - n.last_attempt_ns >= wait_ns:
            due.append(n)
    return sorted(due, key=lambda n: n.created_ns)


def alert_source(record: AlertRecord, rule_types: frozenset[str]) -> str:
    return "rule" if record.type in rule_types else "device"


def routes_for(record: AlertRecord, source: str, routes: Sequence[Route]) -> list[Route]:
    matched = []
    for route in routes:
        if route.match.matches(
            severity=record.severity, site=record.site, alert_type=record.type, source=source
        ):
            matched.append(route)
            if not route.continue_:
                break
    return matched


def _text(record: AlertRecord, kind: str, source: str) -> tuple[str, str]:
    where = f"{record.site}/{record.device}"
    head = "RESOLVED" if kind == KIND_RESOLVED else record.severity.upper()
    suffix = {KIND_REPEAT: " (still open)", KIND_ESCALATION: " (not acknowledged)"}.get(
        kind.split(":", maxsplit=1)[0], ""
    )
    title = f"[{head}] {record.type} on {where}{suffix}"
    lines = [record.message or record.type, f"alert: {record.alert_id}", f"source: {source}"]
    if kind == KIND_RESOLVED and record.closed_by:
        lines.append(f"resolved by: {record.closed_by}")
    return title, "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Plan:
    new: tuple[Notification, ...]


class _Planner:
    """One planning pass: what is on record, and the notifications added so far."""

    def __init__(
        self,
        records: Sequence[AlertRecord],
        *,
        config: RulesConfig,
        targets: Mapping[str, int],
        log: Mapping[str, Notification],
        now_ns: int,
    ) -> None:
        self.config = config
        self.targets = targets
        self.log = log
        self.now_ns = now_ns
        self.labels: Mapping[tuple[str, str], Mapping[str, str]] = {}
        self.rule_types = config.rule_types()
        self.site_down_open = {
            r.site
            for r in records
            if r.is_open and r.type == TYPE_SITE_DOWN and r.type in self.rule_types
        }
        self.sent_by_alert: dict[str, list[Notification]] = {}
        # group_interval: the newest raise per (receiver, target, site, type) group.
        self.last_raise: dict[tuple[str, int, str, str], int] = {}
        for n in log.values():
            if n.status == STATUS_SUPPRESSED:
                continue
            if n.kind in (KIND_RAISED, KIND_ESCALATION):
                self.sent_by_alert.setdefault(n.alert_id, []).append(n)
            if n.kind == KIND_RAISED:
                group = (n.receiver, n.target, n.site, n.type)
                self.last_raise[group] = max(self.last_raise.get(group, 0), n.created_ns)
        self.new: dict[str, Notification] = {}

    def add(
        self,
        record: AlertRecord,
        receiver: str,
        target: int,
        kind: str,
        *,
        status: str = "",
        batch: str = "",
    ) -> None:
        key = idempotency_key(record.alert_id, receiver, target, kind)
        if key in self.log or key in self.new:
            return
        source = alert_source(record, self.rule_types)
        title, body = _text(record, kind, source)
        if status == STATUS_SUPPRESSED:
            body = f"{body}\nnot notified: {receiver}"
        self.new[key] = Notification(
            key=key,
            alert_id=record.alert_id,
            site=record.site,
            device=record.device,
            type=record.type,
            severity=record.severity,
            receiver="-" if status == STATUS_SUPPRESSED else receiver,
            target=target,
            kind=kind.split(":", maxsplit=1)[0],
            title=title,
            body=f"{body}\nkey: {key}",
            created_ns=self.now_ns,
            status=status or STATUS_PENDING,
            batch=batch,
        )

    def plan(self, record: AlertRecord, silences: Sequence[Silence]) -> None:
        if not record.is_open:
            # Resolved notifications always go to whoever got the raise (or escalation).
            for got in self.sent_by_alert.get(record.alert_id, ()):
                self.add(record, got.receiver, got.target, KIND_RESOLVED)
            return
        source = alert_source(record, self.rule_types)
        routes = routes_for(record, source, self.config.effective_routes)
        if not routes:
            return
        muted = silenced(
            silences,
            record.site,
            record.device,
            record.type,
            self.now_ns,
            labels=self.labels.get((record.site, record.device), {}),
        )
        if muted is not None:
            self.add(
                record,
                f"{muted.kind} {muted.silence_id}",
                0,
                "suppressed",
                status=STATUS_SUPPRESSED,
            )
            return
        if record.type == TYPE_DEVICE_OFFLINE and record.site in self.site_down_open:
            self.add(
                record, f"inhibited by {TYPE_SITE_DOWN}", 0, "suppressed", status=STATUS_SUPPRESSED
            )
            return
        for route in routes:
            self.route(record, route)

    def route(self, record: AlertRecord, route: Route) -> None:
        review = record.state_at(self.now_ns)
        age_s = (self.now_ns - record.opened_ns) / NS_PER_SECOND
        if age_s < route.group_wait_s:
            return
        for receiver in route.receivers:
            for target in range(self.targets.get(receiver, 0)):
                self.target(record, route, receiver, target)
        if (
            route.escalate_after_s is not None
            and record.severity == "critical"
            and review == AlertState.ACTIVE
            and age_s >= route.escalate_after_s
        ):
            for receiver in route.escalate_to:
                for target in range(self.targets.get(receiver, 0)):
                    self.add(record, receiver, target, KIND_ESCALATION)

    def target(self, record: AlertRecord, route: Route, receiver: str, target: int) -> None:
        """The raise (spaced by group_interval) and the repeats of one receiver's target.

        A group's raises due in one cycle all go, as one batch (one message); the group's
        next raise waits group_interval after the last one on record.
        """
        group = (receiver, target, record.site, record.type)
        spaced = (
            group not in self.last_raise
            or self.now_ns - self.last_raise[group] >= route.group_interval_s * NS_PER_SECOND
        )
        raised_key = idempotency_key(record.alert_id, receiver, target, KIND_RAISED)
        if record.acknowledged_ns is None and spaced and raised_key not in self.log:
            batch = batch_id(group, self.now_ns) if route.group_interval_s > 0 else ""
            self.add(record, receiver, target, KIND_RAISED, batch=batch)
        if (
            route.repeat_interval_s > 0
            and record.state_at(self.now_ns) == AlertState.ACTIVE
            and raised_key in self.log
        ):
            age_s = (self.now_ns - record.opened_ns) / NS_PER_SECOND
            repeat = int(age_s // route.repeat_interval_s)
            if repeat >= 1:
                self.add(record, receiver, target, f"{KIND_REPEAT}:{repeat}")


def batch_id(group: tuple[str, int, str, str], now_ns: int) -> str:
    """The batch of one group's raises planned at `now_ns` (stored with each of them)."""
    receiver, target, site, alert_type = group
    text = f"{receiver}|{target}|{site}|{alert_type}|{now_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Message:
    """What one send carries: one notification, or a batch of raises merged into one."""

    key: str
    receiver: str
    target: int
    title: str
    body: str
    kind: str
    members: tuple[Notification, ...]


def merge_batches(due: Sequence[Notification]) -> list[Message]:
    """The messages to send for the notifications due: a batch's members due together make
    one message, its key a hash of their keys (so a retry of the same batch carries the
    same key); every other notification is its own message, with its own key."""
    batches: dict[tuple[str, str, int], list[Notification]] = {}
    order: list[tuple[str, str, int]] = []
    for n in due:
        group = (n.batch or n.key, n.receiver, n.target)
        if group not in batches:
            batches[group] = []
            order.append(group)
        batches[group].append(n)
    messages = []
    for group in order:
        members = batches[group]
        first = members[0]
        if len(members) == 1:
            messages.append(
                Message(
                    first.key,
                    first.receiver,
                    first.target,
                    first.title,
                    first.body,
                    first.kind,
                    (first,),
                )
            )
            continue
        keys = sorted(m.key for m in members)
        key = "ew-" + hashlib.sha256("|".join(keys).encode()).hexdigest()[:24]
        head = first.severity.upper()
        title = f"[{head}] {len(members)} {first.type} alerts on {first.site}"
        body = "\n\n".join(f"{m.title}\n{m.body}" for m in members)
        messages.append(
            Message(
                key,
                first.receiver,
                first.target,
                title,
                f"{body}\n\nkey: {key}",
                first.kind,
                tuple(members),
            )
        )
    return messages


def plan_notifications(
    records: Sequence[AlertRecord],
    *,
    config: RulesConfig,
    targets: Mapping[str, int],
    log: Mapping[str, Notification],
    silences: Sequence[Silence],
    now_ns: int,
    labels: Mapping[tuple[str, str], Mapping[str, str]] | None = None,
) -> Plan:
    """The notifications to record now: raises, repeats, escalations, resolves, suppressions.

    `targets` is how many Apprise URLs each receiver has (a receiver without any is skipped).
    `labels`: each device's effective labels, for silences that match on labels.
    """
    planner = _Planner(records, config=config, targets=targets, log=log, now_ns=now_ns)
    planner.labels = labels or {}
    for record in records:
        planner.plan(record, silences)
    return Plan(new=tuple(planner.new.values()))
