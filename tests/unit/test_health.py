"""The health model of the contract: ONLINE, STALE, OFFLINE per device, UNKNOWN fleet-wide."""

from __future__ import annotations

import pytest

from edgewatch.health import (
    DEVICE_ACTION_REINSTATE,
    DEVICE_ACTION_RETIRE,
    DeviceAction,
    DeviceSnapshot,
    HealthState,
    device_health,
    fleet_health,
    ingest_is_silent,
    last_heard_ns,
    retired_devices,
    validate_device_action,
    worst_state,
)

S = 1_000_000_000
NOW = 1_800_000_000 * S


def snap(**kwargs: object) -> DeviceSnapshot:
    return DeviceSnapshot(site="plant-a", device="cam-1", **kwargs)  # type: ignore[arg-type]


def test_recent_telemetry_is_online() -> None:
    health = device_health(snap(last_telemetry_ns=NOW - 5 * S, interval_s=10), NOW)
    assert health.state is HealthState.ONLINE
    assert "10 s" in health.reason


def test_silent_beyond_three_intervals_is_stale_since_the_threshold() -> None:
    health = device_health(snap(last_telemetry_ns=NOW - 45 * S, interval_s=10), NOW)
    assert health.state is HealthState.STALE
    assert health.since_ns == NOW - 45 * S + 30 * S
    assert "45 s" in health.reason


def test_silent_beyond_ten_intervals_is_offline() -> None:
    health = device_health(snap(last_telemetry_ns=NOW - 101 * S, interval_s=10), NOW)
    assert health.state is HealthState.OFFLINE
    assert health.since_ns == NOW - 101 * S + 100 * S


def test_exactly_three_intervals_is_still_online() -> None:
    assert device_health(snap(last_telemetry_ns=NOW - 30 * S, interval_s=10), NOW).state is (
        HealthState.ONLINE
    )


def test_last_will_makes_a_device_offline_at_once() -> None:
    health = device_health(
        snap(
            last_telemetry_ns=NOW - 2 * S,
            status_state="offline",
            status_ns=NOW - S,
            status_reason="lwt",
            interval_s=10,
        ),
        NOW,
    )
    assert health.state is HealthState.OFFLINE
    assert "last will" in health.reason
    assert health.since_ns == NOW - S


def test_telemetry_after_an_offline_status_wins() -> None:
    health = device_health(
        snap(last_telemetry_ns=NOW - S, status_state="offline", status_ns=NOW - 5 * S), NOW
    )
    assert health.state is HealthState.ONLINE


def test_default_interval_is_sixty_seconds() -> None:
    assert device_health(snap(last_telemetry_ns=NOW - 170 * S), NOW).state is HealthState.ONLINE
    assert device_health(snap(last_telemetry_ns=NOW - 190 * S), NOW).state is HealthState.STALE


def test_birth_without_telemetry_is_online_until_readings_are_overdue() -> None:
    fresh = snap(status_state="online", status_ns=NOW - 5 * S, interval_s=10)
    assert device_health(fresh, NOW).state is HealthState.ONLINE
    old = snap(status_state="online", status_ns=NOW - 50 * S, interval_s=10)
    assert device_health(old, NOW).state is HealthState.STALE


def test_never_reported_is_offline() -> None:
    assert device_health(snap(), NOW).state is HealthState.OFFLINE


def test_silent_ingest_makes_the_whole_fleet_unknown() -> None:
    snaps = [snap(last_telemetry_ns=NOW - S, interval_s=10)]
    healths = fleet_health(
        snaps, NOW, ingest_last_report_ns=NOW - 60 * S, ingest_report_interval_s=5
    )
    assert [h.state for h in healths] == [HealthState.UNKNOWN]
    assert "stopped reporting 60 s ago" in healths[0].reason
    alive = fleet_health(snaps, NOW, ingest_last_report_ns=NOW - 4 * S, ingest_report_interval_s=5)
    assert [h.state for h in alive] == [HealthState.ONLINE]


def test_ingest_never_reported_is_silent() -> None:
    assert ingest_is_silent(None, 5, NOW)


def test_worst_state_rolls_up() -> None:
    assert worst_state([HealthState.ONLINE, HealthState.STALE]) is HealthState.STALE
    assert worst_state([HealthState.ONLINE, HealthState.OFFLINE, HealthState.STALE]) is (
        HealthState.OFFLINE
    )
    assert worst_state([HealthState.ONLINE]) is HealthState.ONLINE


# ------------------------------------------------- whose clock: receipt times, not the device's

MIN = 60 * S
DAY = 86400 * S


def received_last(messages: list[tuple[str, int, int]], **kwargs: object) -> DeviceSnapshot:
    """The snapshot the state bucket gives for these messages, in the order received.

    Each message is (kind, own ts, receipt): kind "reading", "birth" or "will". As the store
    keeps them: the last status is the last one received, the newest telemetry is the one
    received last (its own time is the newest reading's).
    """
    status: tuple[str, int, int] | None = None
    reading: tuple[int, int] | None = None
    for kind, own_ns, received_ns in sorted(messages, key=lambda m: m[2]):
        if kind == "reading":
            reading = (own_ns, received_ns)
        else:
            status = (kind, own_ns, received_ns)
    return snap(
        last_telemetry_ns=reading[0] if reading else None,
        telemetry_received_ns=reading[1] if reading else None,
        status_state=None if status is None else ("offline" if status[0] == "will" else "online"),
        status_ns=status[1] if status else None,
        status_received_ns=status[2] if status else None,
        status_reason="lwt" if status is not None and status[0] == "will" else None,
        **kwargs,
    )


def test_a_device_clock_two_minutes_behind_is_online_after_a_reconnect() -> None:
    behind = 2 * MIN
    will_at = NOW - 60 * S  # the will carries no ts: stamped with its receipt time
    messages = [
        ("reading", will_at - 20 * S - behind, will_at - 20 * S),
        ("will", will_at, will_at),
        ("birth", will_at + 30 * S - behind, will_at + 30 * S),
        ("reading", will_at + 40 * S - behind, will_at + 40 * S),
        ("reading", will_at + 50 * S - behind, will_at + 50 * S),
    ]
    health = device_health(received_last(messages, interval_s=10), NOW)
    assert health.state is HealthState.ONLINE
    assert health.since_ns == will_at + 30 * S  # the birth, as received
    assert health.last_seen_ns == will_at + 50 * S


def test_readings_after_a_will_on_a_slow_clock_are_not_hidden_by_the_will() -> None:
    # No birth stored (e.g. it was lost to a broker restart): the readings received after the
    # will still say the device is back, whatever its clock says.
    behind = 2 * MIN
    health = device_health(
        received_last(
            [
                ("will", NOW - 60 * S, NOW - 60 * S),
                ("reading", NOW - 10 * S - behind, NOW - 10 * S),
            ],
            interval_s=10,
        ),
        NOW,
    )
    assert health.state is HealthState.ONLINE


def test_a_backlog_drained_late_keeps_the_will_before_the_readings_that_followed_it() -> None:
    # Readings, will, birth, readings, all sent an hour ago and held by the broker while the
    # ingest was down; drained now in the order sent. The will is stamped on receipt (now),
    # later than the device times of the readings after it.
    sent = NOW - 3600 * S
    drained = NOW - 5 * S
    order = ["reading", "reading", "will", "birth", "reading", "reading"]
    messages = [
        (kind, drained + i if kind == "will" else sent + i * 10 * S, drained + i)
        for i, kind in enumerate(order)
    ]
    health = device_health(received_last(messages, interval_s=10), NOW)
    assert health.state is HealthState.ONLINE
    # ... and a will that really is the last word still counts.
    messages.append(("will", NOW - S, NOW - S))
    assert device_health(received_last(messages, interval_s=10), NOW).state is (HealthState.OFFLINE)


def test_silence_is_measured_by_receipt_time_against_now() -> None:
    # A device clock an hour behind: its newest reading looks an hour old, but it arrived 5 s
    # ago; a receipt 95 s old at a 10 s interval is STALE whatever the reading's time.
    fresh = snap(last_telemetry_ns=NOW - 3600 * S, telemetry_received_ns=NOW - 5 * S, interval_s=10)
    assert device_health(fresh, NOW).state is HealthState.ONLINE
    late = snap(last_telemetry_ns=NOW + 60 * S, telemetry_received_ns=NOW - 95 * S, interval_s=10)
    assert device_health(late, NOW).state is HealthState.STALE


def test_a_five_minute_reporter_without_reconnect_for_31_days_keeps_its_interval() -> None:
    health = device_health(
        snap(
            status_state="online",
            status_ns=NOW - 31 * DAY,
            status_received_ns=NOW - 31 * DAY,
            interval_s=300,
            last_telemetry_ns=NOW - 6 * MIN,
            telemetry_received_ns=NOW - 6 * MIN,
        ),
        NOW,
    )
    assert health.state is HealthState.ONLINE
    assert "5 min" in health.reason


def test_a_device_silent_for_45_days_is_offline_with_its_last_seen_time() -> None:
    seen = NOW - 45 * DAY
    health = device_health(
        snap(
            status_state="online",
            status_ns=seen - DAY,
            status_received_ns=seen - DAY,
            interval_s=60,
            last_telemetry_ns=seen,
            telemetry_received_ns=seen,
        ),
        NOW,
    )
    assert health.state is HealthState.OFFLINE
    assert health.last_seen_ns == seen
    assert "45.0 d" in health.reason


def test_data_without_receipt_times_falls_back_to_the_messages_own() -> None:
    health = device_health(snap(last_telemetry_ns=NOW - 5 * S, interval_s=10), NOW)
    assert health.last_seen_ns == NOW - 5 * S


# ------------------------------------------------------------------------------ retirement


def retire(ts: int, action: str = DEVICE_ACTION_RETIRE) -> DeviceAction:
    return DeviceAction(site="plant-a", device="cam-1", action=action, user="ana", ts_ns=ts)


def test_a_retired_device_stays_retired_until_reinstated_or_heard_again() -> None:
    key = ("plant-a", "cam-1")
    assert key in retired_devices([retire(NOW)], {key: NOW - 45 * DAY})
    assert retired_devices([retire(NOW)], {key: NOW - 45 * DAY})[key].user == "ana"
    # Reinstated: back in the fleet.
    assert retired_devices([retire(NOW), retire(NOW + S, DEVICE_ACTION_REINSTATE)], {key: 0}) == {}
    # Reported again after the retirement: back too.
    assert retired_devices([retire(NOW)], {key: NOW + MIN}) == {}
    # Retired again later: the newest action holds, in whatever order they are read.
    actions = [retire(NOW + 2 * S), retire(NOW + S, DEVICE_ACTION_REINSTATE), retire(NOW)]
    assert key in retired_devices(actions, {key: NOW - DAY})


def test_last_heard_is_the_newest_receipt_of_telemetry_or_status() -> None:
    assert last_heard_ns(snap(telemetry_received_ns=5, status_received_ns=9)) == 9
    assert last_heard_ns(snap()) is None


def test_device_actions_are_validated() -> None:
    validate_device_action(DEVICE_ACTION_RETIRE, "gone", "ana")
    with pytest.raises(ValueError, match="retire, reinstate"):
        validate_device_action("delete", "", "ana")
    with pytest.raises(ValueError, match="acting user"):
        validate_device_action(DEVICE_ACTION_RETIRE, "", " ")
    with pytest.raises(ValueError, match="limit"):
        validate_device_action(DEVICE_ACTION_RETIRE, "x" * 1001, "ana")
