"""Notification planning: routes, repeats until ack, escalation, silences, inhibition, resolve."""

from __future__ import annotations

from dataclasses import replace

from alerter.notify import (
    STATUS_FAILED,
    STATUS_SENT,
    LogRecord,
    Notification,
    due_for_delivery,
    fold_log,
    merge_batches,
    plan_notifications,
)
from edgewatch.alerts import AlertAction, StoredAlertEvent, fold_alerts
from edgewatch.rules import parse_rules
from edgewatch.silences import new_silence

S = 1_000_000_000
ROUTES = """
receivers: [{name: boss, urls_env: BOSS_URLS}]
routes:
  - match: {severity: [critical, major]}
    receivers: [default]
    repeat_interval: 60
    escalate_after: 300
    escalate_to: [boss]
"""


def ev(
    t: int,
    state: str = "raised",
    *,
    device: str = "cam1",
    type_: str = "device_offline",
    severity: str = "critical",
) -> StoredAlertEvent:
    return StoredAlertEvent("s1", device, type_, t * S, severity, state, "down")


def plan(events, log=None, actions=(), silences=(), now=0, text=ROUTES, labels=None):  # type: ignore[no-untyped-def]
    records = fold_alerts(events, actions)
    return plan_notifications(
        records,
        config=parse_rules(text),
        targets={"default": 2, "boss": 1},
        log=log or {},
        silences=list(silences),
        now_ns=now * S,
        labels=labels,
    ).new


def sent(notifications: tuple[Notification, ...]) -> dict[str, Notification]:
    return {n.key: replace(n, status=STATUS_SENT) for n in notifications}


def test_raise_goes_to_every_target_once() -> None:
    first = plan([ev(0)], now=1)
    assert [(n.kind, n.receiver, n.target) for n in first] == [
        ("raised", "default", 0),
        ("raised", "default", 1),
    ]
    assert plan([ev(0)], log=sent(first), now=2) == ()
    assert len({n.key for n in first}) == 2


def test_minor_alerts_do_not_notify_by_default() -> None:
    assert plan([ev(0, severity="minor")], now=1, text="") == ()
    assert len(plan([ev(0, severity="major")], now=1, text="")) == 2


def test_repeats_until_acknowledged_and_escalates_when_not() -> None:
    log = sent(plan([ev(0)], now=1))
    repeat = plan([ev(0)], log=log, now=61)
    assert {n.kind for n in repeat} == {"repeat"}
    log |= sent(repeat)
    assert plan([ev(0)], log=log, now=70) == ()
    ack = AlertAction("s1/cam1/device_offline/0", "ack", "ann", 100 * S)
    assert plan([ev(0)], log=log, actions=[ack], now=400) == ()
    late = plan([ev(0)], log=log, now=301)
    assert {(n.kind, n.receiver) for n in late} >= {("escalation", "boss")}


def test_resolved_goes_to_whoever_got_the_raise() -> None:
    log = sent(plan([ev(0)], now=1))
    resolved = plan([ev(0), ev(5, "cleared")], log=log, now=6)
    assert sorted((n.kind, n.receiver, n.target) for n in resolved) == [
        ("resolved", "default", 0),
        ("resolved", "default", 1),
    ]
    assert resolved[0].title.startswith("[RESOLVED]")


def test_a_silence_records_but_does_not_notify() -> None:
    mute = new_silence(
        kind="silence",
        created_by="ann",
        reason="swap",
        now_ns=0,
        starts_ns=0,
        ends_ns=100 * S,
        site="s1",
    )
    out = plan([ev(0)], silences=[mute], now=1)
    assert [(n.status, n.receiver) for n in out] == [("suppressed", "-")]
    after = plan([ev(0)], log={n.key: n for n in out}, silences=[mute], now=200)
    assert {n.kind for n in after} == {"raised"}


def test_a_silence_on_a_label_mutes_the_matching_device_and_not_another() -> None:
    mute = new_silence(
        kind="silence",
        created_by="ann",
        reason="canary ring under test",
        now_ns=0,
        starts_ns=0,
        ends_ns=100 * S,
        labels="ring=canary",
    )
    # Effective labels: cam1 is canary (status or operator), cam2 is not.
    labels = {("s1", "cam1"): {"ring": "canary"}, ("s1", "cam2"): {"ring": "stable"}}
    out = plan([ev(0, device="cam1"), ev(0, device="cam2")], silences=[mute], now=1, labels=labels)
    by_device = {(n.device, n.status) for n in out}
    assert ("cam1", "suppressed") in by_device
    assert {n.status for n in out if n.device == "cam1"} == {"suppressed"}
    assert {n.receiver for n in out if n.device == "cam2"} == {"default"}
    assert all(n.status != "suppressed" for n in out if n.device == "cam2")


def test_site_down_inhibits_device_offline_notifications() -> None:
    events = [ev(0, device="cam1"), ev(0, device="cam2"), ev(0, device="_site", type_="site_down")]
    out = plan(events, now=1)
    notified = [(n.type, n.device) for n in out if n.status == "pending"]
    assert notified == [("site_down", "_site"), ("site_down", "_site")]
    assert sum(1 for n in out if n.status == "suppressed") == 2


def test_log_fold_keeps_delivered_and_schedules_retries_with_backoff() -> None:
    records = [
        LogRecord("k1", 1 * S, "pending", alert_id="a"),
        LogRecord("k1", 2 * S, STATUS_FAILED, attempt=1, error="refused"),
        LogRecord("k2", 1 * S, "pending", alert_id="b"),
        LogRecord("k2", 2 * S, STATUS_SENT, attempt=1),
        LogRecord("k2", 3 * S, STATUS_FAILED, attempt=2),
    ]
    log = fold_log(records)
    assert log["k2"].status == STATUS_SENT
    assert log["k1"].attempts == 1
    assert due_for_delivery(log, 3 * S, retry_base_s=5, retry_max_s=60) == []
    assert [n.key for n in due_for_delivery(log, 7 * S, retry_base_s=5, retry_max_s=60)] == ["k1"]


def test_group_interval_merges_a_groups_raises_and_spaces_the_next_ones() -> None:
    text = "routes: [{receivers: [default], group_interval: 60}]"
    first = plan([ev(0, device="cam1"), ev(0, device="cam2")], now=1, text=text)
    # Both raises go now, as one batch per target: one message each.
    assert {n.device for n in first} == {"cam1", "cam2"}
    assert len({(n.batch, n.target) for n in first}) == 2 and all(n.batch for n in first)
    messages = merge_batches(first)
    assert len(messages) == 2 and all(len(m.members) == 2 for m in messages)
    assert messages[0].title == "[CRITICAL] 2 device_offline alerts on s1"
    assert all(n.key in messages[0].body for n in messages[0].members if n.target == 0)
    # A retry of the same batch carries the same key.
    assert merge_batches(first)[0].key == messages[0].key
    log = sent(first)
    events = [ev(0, device="cam1"), ev(0, device="cam2"), ev(20, device="cam3")]
    assert plan(events, log=log, now=30, text=text) == ()  # cam3 waits for the interval
    later = plan(events, log=log, now=62, text=text)
    assert {n.device for n in later} == {"cam3"}
    assert [len(m.members) for m in merge_batches(later)] == [1, 1]
