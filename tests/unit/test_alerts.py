"""The alert fold: one open alert per (site, device, type), updated in place, reviewable."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edgewatch.alerts import (
    AlertAction,
    AlertState,
    StoredAlertEvent,
    alert_id,
    fold_alerts,
    noisiest_types,
    review_stats,
    validate_action,
)

S = 1_000_000_000


def raised(
    ts: int,
    *,
    type_: str = "overheat",
    severity: str = "major",
    value: float = 90.0,
    device: str = "cam-1",
) -> StoredAlertEvent:
    return StoredAlertEvent(
        site="plant-a",
        device=device,
        type=type_,
        ts_ns=ts * S,
        severity=severity,
        state="raised",
        message=f"GPU at {value}",
        value=value,
    )


def cleared(ts: int, *, type_: str = "overheat") -> StoredAlertEvent:
    return StoredAlertEvent(
        site="plant-a",
        device="cam-1",
        type=type_,
        ts_ns=ts * S,
        severity="major",
        state="cleared",
    )


def test_repeat_raises_update_one_open_alert() -> None:
    records = fold_alerts([raised(1), raised(2, value=93.0), raised(3, value=95.0)])
    assert len(records) == 1
    rec = records[0]
    assert rec.count == 3
    assert rec.last_value == 95.0
    assert rec.last_ns == 3 * S
    assert rec.opened_ns == S
    assert rec.alert_id == alert_id("plant-a", "cam-1", "overheat", S)
    assert rec.state_at(4 * S) is AlertState.ACTIVE


def test_duplicate_delivery_of_the_same_event_folds_the_same() -> None:
    # Events are read back from the store, where a redelivery overwrote itself; the fold
    # is order-independent of input order too.
    a = fold_alerts([raised(3), raised(1), raised(2)])
    b = fold_alerts([raised(1), raised(2), raised(3)])
    assert a == b


def test_cleared_closes_and_a_new_raise_opens_a_new_alert() -> None:
    records = fold_alerts([raised(1), cleared(2), raised(5)])
    assert len(records) == 2
    newest, oldest = records
    assert oldest.closed_ns == 2 * S and oldest.closed_by == "device"
    assert newest.is_open and newest.opened_ns == 5 * S


def test_cleared_without_open_alert_is_ignored() -> None:
    assert fold_alerts([cleared(1)]) == []


def test_repeat_escalates_severity() -> None:
    records = fold_alerts([raised(1, severity="minor"), raised(2, severity="critical")])
    assert records[0].severity == "critical"


def test_acknowledge_and_resolve_record_who_when_and_note() -> None:
    aid = alert_id("plant-a", "cam-1", "overheat", S)
    records = fold_alerts(
        [raised(1)],
        [
            AlertAction(alert_id=aid, action="ack", user="ana", ts_ns=2 * S, note="on it"),
            AlertAction(alert_id=aid, action="comment", user="bo", ts_ns=3 * S, note="fan"),
            AlertAction(alert_id=aid, action="resolve", user="ana", ts_ns=4 * S, note="fixed"),
        ],
    )
    rec = records[0]
    assert rec.acknowledged_by == "ana" and rec.acknowledged_ns == 2 * S
    assert rec.closed_by == "ana" and rec.closed_ns == 4 * S
    assert rec.state_at(5 * S) is AlertState.RESOLVED
    assert [(h.what, h.by, h.note) for h in rec.history] == [
        ("raised", "device", "GPU at 90.0"),
        ("acknowledged", "ana", "on it"),
        ("comment", "bo", "fan"),
        ("resolved", "ana", "fixed"),
    ]


def test_snoozed_acknowledgement_lapses_and_notifies_again() -> None:
    aid = alert_id("plant-a", "cam-1", "overheat", S)
    rec = fold_alerts(
        [raised(1)],
        [AlertAction(alert_id=aid, action="ack", user="ana", ts_ns=2 * S, snooze_until_ns=60 * S)],
    )[0]
    assert rec.state_at(30 * S) is AlertState.ACKNOWLEDGED
    assert rec.state_at(61 * S) is AlertState.ACTIVE


def test_a_raise_after_operator_resolve_opens_a_new_alert() -> None:
    aid = alert_id("plant-a", "cam-1", "overheat", S)
    records = fold_alerts(
        [raised(1), raised(10)],
        [AlertAction(alert_id=aid, action="resolve", user="ana", ts_ns=5 * S)],
    )
    assert len(records) == 2
    assert records[0].is_open and records[0].opened_ns == 10 * S


def test_action_on_unknown_alert_is_ignored() -> None:
    records = fold_alerts(
        [raised(1)], [AlertAction(alert_id="x/y/z/1", action="ack", user="a", ts_ns=2 * S)]
    )
    assert records[0].acknowledged_ns is None


def test_review_stats_and_noisiest_types() -> None:
    aid = alert_id("plant-a", "cam-1", "overheat", S)
    records = fold_alerts(
        [raised(1), raised(2), raised(3, type_="camera_loss", device="cam-2")],
        [
            AlertAction(alert_id=aid, action="ack", user="a", ts_ns=11 * S),
            AlertAction(alert_id=aid, action="resolve", user="a", ts_ns=21 * S),
        ],
    )
    stats = review_stats(records)
    assert stats.median_time_to_ack_s == 10.0
    assert stats.median_time_to_resolve_s == 20.0
    assert noisiest_types(records) == [("overheat", 2), ("camera_loss", 1)]


def test_validate_action_refuses_unknown_action_and_long_note() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        validate_action("delete", "", "ana")
    with pytest.raises(ValueError, match="limit is 1000"):
        validate_action("comment", "x" * 1001, "ana")
    with pytest.raises(ValueError, match="acting user"):
        validate_action("ack", "", " ")


# ------------------------------------------ whose clock: actions apply to the alert they name

MIN = 60


def heard(event: StoredAlertEvent, received_s: int) -> StoredAlertEvent:
    """The event as the state bucket holds it: with the ingest's receipt time."""
    return replace(event, received_ns=received_s * S)


def test_an_ack_while_the_device_clock_runs_ahead_is_applied() -> None:
    # The device clock is 3 min ahead: the raise says T+180 s, the ingest got it at T. The
    # operator acknowledges at T+60 s, "before" the alert by the device's clock.
    t = 1000
    aid = alert_id("plant-a", "cam-1", "overheat", (t + 3 * MIN) * S)
    rec = fold_alerts(
        [heard(raised(t + 3 * MIN), t)],
        [AlertAction(alert_id=aid, action="ack", user="ana", ts_ns=(t + MIN) * S, note="on it")],
    )[0]
    assert rec.acknowledged_by == "ana"
    assert rec.state_at((t + 2 * MIN) * S) is AlertState.ACKNOWLEDGED
    assert [h.what for h in rec.history] == ["raised", "acknowledged"]


def test_a_resolve_while_the_device_clock_runs_ahead_closes_and_the_next_raise_reopens() -> None:
    t = 1000
    aid = alert_id("plant-a", "cam-1", "overheat", (t + 3 * MIN) * S)
    records = fold_alerts(
        [heard(raised(t + 3 * MIN), t), heard(raised(t + 5 * MIN), t + 2 * MIN)],
        [AlertAction(alert_id=aid, action="resolve", user="ana", ts_ns=(t + MIN) * S)],
    )
    assert len(records) == 2
    newest, first = records
    assert first.alert_id == aid and first.closed_by == "ana" and first.count == 1
    assert newest.is_open and newest.opened_ns == (t + 5 * MIN) * S


def test_a_repeat_received_before_the_resolve_belongs_to_the_resolved_alert() -> None:
    # A device clock behind: the repeat says t+10 but arrived before the operator resolved.
    aid = alert_id("plant-a", "cam-1", "overheat", S)
    records = fold_alerts(
        [heard(raised(1), 100), heard(raised(10), 200)],
        [AlertAction(alert_id=aid, action="resolve", user="ana", ts_ns=300 * S)],
    )
    assert len(records) == 1
    assert records[0].count == 2 and not records[0].is_open


def test_an_action_taken_before_its_alert_was_received_still_applies() -> None:
    # The dashboard's server clock a little behind the ingest's.
    aid = alert_id("plant-a", "cam-1", "overheat", 50 * S)
    rec = fold_alerts(
        [heard(raised(50), 50), heard(raised(60), 60)],
        [AlertAction(alert_id=aid, action="ack", user="ana", ts_ns=49 * S)],
    )[0]
    assert rec.acknowledged_by == "ana"
    assert rec.count == 2


def test_an_alert_raised_45_days_ago_keeps_its_id_and_its_ack() -> None:
    day = 86400
    opened = 1_800_000_000 - 45 * day
    aid = alert_id("plant-a", "cam-1", "overheat", opened * S)
    events = [raised(opened)] + [raised(opened + k * day) for k in range(1, 45, 4)]
    actions = [AlertAction(alert_id=aid, action="ack", user="ana", ts_ns=(opened + day) * S)]
    (rec,) = fold_alerts(events, actions)
    assert rec.alert_id == aid and rec.is_open
    assert rec.acknowledged_by == "ana"
    assert "acknowledged" in [h.what for h in rec.history]
