"""The alert fold: one open alert per (site, device, type), updated in place, reviewable."""

from __future__ import annotations

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
