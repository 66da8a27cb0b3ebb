"""The health model of the contract: ONLINE, STALE, OFFLINE per device, UNKNOWN fleet-wide."""

from __future__ import annotations

from edgewatch.health import (
    DeviceSnapshot,
    HealthState,
    device_health,
    fleet_health,
    ingest_is_silent,
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
