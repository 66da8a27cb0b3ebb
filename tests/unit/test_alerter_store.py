"""The alerter store's pure parts: the fleet the rules see (retired devices left out,
windows marked), rates, rule states."""

from __future__ import annotations

from datetime import UTC, datetime

from alerter.evaluate import InstanceKey, RuleState
from alerter.store import fleet_input, parse_rates, parse_rule_states
from edgewatch.health import DeviceAction
from edgewatch.rows import Heartbeat, parse_snapshots
from edgewatch.silences import new_silence

S = 1_000_000_000


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def test_the_fleet_is_the_dashboards_less_the_retired_with_windows_marked() -> None:
    # State-bucket rows: statuses stamped with their receipt time, last-seen per hour.
    status = [
        {"site": "s", "device": d, "_field": f, "_value": v, "_time": at(100)}
        for d in ("gone", "down", "fixing")
        for f, v in (("state", "online"), ("model", "yolo"), ("interval_s", 5.0), ("ts_ns", 1))
    ]
    seen = [
        {"site": "s", "device": d, "_field": "received_ns", "_value": 100 * S, "_time": at(0)}
        for d in ("gone", "down", "fixing")
    ]
    snapshots, info = parse_snapshots(status, seen)
    retire = DeviceAction(site="s", device="gone", action="retire", user="ana", ts_ns=200 * S)
    window = new_silence(
        kind="maintenance",
        created_by="ana",
        reason="new lens",
        now_ns=150 * S,
        starts_ns=150 * S,
        ends_ns=900 * S,
        site="s",
        device="fixing",
    )
    fleet = fleet_input(
        snapshots,
        info,
        heartbeat=Heartbeat(499 * S, 5.0),
        actions=[retire],
        silences=[window],
        metrics={},
        rates={},
        now_ns=500 * S,
    )
    views = {d.device: d for d in fleet.devices}
    assert set(views) == {"down", "fixing"}  # retired: gone, not offline
    assert views["down"].health.state == "OFFLINE" and not views["down"].in_maintenance
    assert views["fixing"].in_maintenance
    assert (views["down"].model, views["down"].interval_s) == ("yolo", 5.0)
    assert not fleet.ingest_silent


def test_the_rules_see_effective_labels_and_label_windows_apply() -> None:
    status = [
        {"site": "s", "device": d, "_field": f, "_value": v, "_time": at(100)}
        for d in ("a", "b")
        for f, v in (
            ("state", "online"), ("interval_s", 5.0), ("ts_ns", 1),
            ("labels", '{"ring": "canary", "hardware": "orin"}'),
        )
    ]  # fmt: skip
    seen = [
        {"site": "s", "device": d, "_field": "received_ns", "_value": 100 * S, "_time": at(0)}
        for d in ("a", "b")
    ]
    snapshots, info = parse_snapshots(status, seen)
    window = new_silence(
        kind="maintenance", created_by="ana", reason="canary swap", now_ns=150 * S,
        starts_ns=150 * S, ends_ns=900 * S, labels="ring=canary",
    )  # fmt: skip
    fleet = fleet_input(
        snapshots,
        info,
        heartbeat=Heartbeat(499 * S, 5.0),
        actions=[],
        silences=[window],
        metrics={},
        rates={},
        now_ns=500 * S,
        label_overlays={("s", "b"): {"ring": None, "zone": "north"}},
    )
    views = {d.device: d for d in fleet.devices}
    assert views["a"].labels == {"hardware": "orin", "ring": "canary"}
    assert views["b"].labels == {"hardware": "orin", "zone": "north"}
    assert views["a"].in_maintenance and not views["b"].in_maintenance


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
