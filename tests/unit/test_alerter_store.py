"""The alerter store's pure row parsing: fleet snapshots with models, rates, rule states."""

from __future__ import annotations

from datetime import UTC, datetime

from alerter.evaluate import InstanceKey, RuleState
from alerter.store import parse_fleet, parse_rates, parse_rule_states

S = 1_000_000_000


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def test_fleet_rows_give_snapshots_and_models() -> None:
    status = [
        {"site": "s", "device": "d", "_field": "state", "_value": "offline", "_time": at(100)},
        {"site": "s", "device": "d", "_field": "reason", "_value": "lwt", "_time": at(100)},
        {"site": "s", "device": "d", "_field": "model", "_value": "yolo", "_time": at(50)},
        {"site": "s", "device": "d", "_field": "interval_s", "_value": 5.0, "_time": at(50)},
    ]
    seen = [{"site": "s", "device": "d", "_time": at(90)}]
    (snap,), models = parse_fleet(status, seen)
    assert (snap.status_state, snap.status_reason, snap.interval_s) == ("offline", "lwt", 5.0)
    assert snap.last_telemetry_ns == 90 * S
    assert models == {("s", "d"): "yolo"}


def test_rates_need_two_distinct_points() -> None:
    first = [
        {"site": "s", "device": "a", "_value": 10.0, "_time": at(0)},
        {"site": "s", "device": "b", "_value": 1.0, "_time": at(5)},
    ]
    last = [
        {"site": "s", "device": "a", "_value": 40.0, "_time": at(60)},
        {"site": "s", "device": "b", "_value": 1.0, "_time": at(5)},
    ]
    assert parse_rates(first, last) == {("s", "a"): 0.5}


def test_rule_states_skip_what_they_do_not_know() -> None:
    rows = [
        {"rule": "r", "site": "s", "device": "d", "state": "firing", "since_ns": 5},
        {"rule": "r", "site": "s", "device": "e", "state": "bogus"},
    ]
    states = parse_rule_states(rows)
    assert list(states) == [InstanceKey("r", "s", "d")]
    assert states[InstanceKey("r", "s", "d")].state == RuleState.FIRING
