"""The device health model of the contract, as pure functions of what was last seen and now.

ONLINE: telemetry within 3 x interval. STALE: silent longer. OFFLINE: an offline status (or
the last will), or silent longer than 10 x interval. UNKNOWN for the whole fleet when the
ingest itself stopped reporting: then nothing we hold says anything about the devices, and
showing the last picture as current would be a lie. Each verdict carries its reason and
since-when.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from edgewatch.contract import DEFAULT_INTERVAL_SECONDS

STALE_AFTER_INTERVALS = 3
OFFLINE_AFTER_INTERVALS = 10
INGEST_SILENT_AFTER_REPORTS = 3
NS_PER_SECOND = 1_000_000_000


class HealthState(StrEnum):
    ONLINE = "ONLINE"
    STALE = "STALE"
    OFFLINE = "OFFLINE"
    UNKNOWN = "UNKNOWN"


# Worst first: a site shows the worst state of its devices.
SEVERITY_ORDER: tuple[HealthState, ...] = (
    HealthState.OFFLINE,
    HealthState.STALE,
    HealthState.UNKNOWN,
    HealthState.ONLINE,
)


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    """What the store knows of one device: its last telemetry and its last status."""

    site: str
    device: str
    last_telemetry_ns: int | None = None
    status_state: str | None = None
    status_ns: int | None = None
    status_reason: str | None = None
    interval_s: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    site: str
    device: str
    state: HealthState
    reason: str
    since_ns: int | None
    last_seen_ns: int | None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def device_health(snapshot: DeviceSnapshot, now_ns: int) -> DeviceHealth:
    """The health of one device at `now_ns`."""
    interval = snapshot.interval_s or DEFAULT_INTERVAL_SECONDS
    interval_ns = int(interval * NS_PER_SECOND)

    def verdict(state: HealthState, reason: str, since: int | None) -> DeviceHealth:
        return DeviceHealth(
            site=snapshot.site,
            device=snapshot.device,
            state=state,
            reason=reason,
            since_ns=since,
            last_seen_ns=snapshot.last_telemetry_ns,
        )

    telemetry_ns = snapshot.last_telemetry_ns
    if (
        snapshot.status_state == "offline"
        and snapshot.status_ns is not None
        and (telemetry_ns is None or snapshot.status_ns >= telemetry_ns)
    ):
        why = snapshot.status_reason or "device said so"
        if why == "lwt":
            why = "connection lost (last will)"
        return verdict(HealthState.OFFLINE, f"offline status: {why}", snapshot.status_ns)

    # An online birth counts as a sign of life: a device that just connected is not STALE
    # before its first reading is due.
    heard_ns = telemetry_ns
    if snapshot.status_state == "online" and snapshot.status_ns is not None:
        heard_ns = max(heard_ns or 0, snapshot.status_ns)
    if heard_ns is None:
        return verdict(HealthState.OFFLINE, "never reported", None)

    silent_ns = max(0, now_ns - heard_ns)
    if silent_ns <= STALE_AFTER_INTERVALS * interval_ns:
        since = heard_ns
        if snapshot.status_state == "online" and snapshot.status_ns is not None:
            since = snapshot.status_ns
        if telemetry_ns is None:
            return verdict(HealthState.ONLINE, "connected, no telemetry yet", since)
        return verdict(HealthState.ONLINE, f"reporting every {_duration(interval)}", since)
    silent = _duration(silent_ns / NS_PER_SECOND)
    expected = _duration(interval)
    if silent_ns <= OFFLINE_AFTER_INTERVALS * interval_ns:
        return verdict(
            HealthState.STALE,
            f"no telemetry for {silent} (expected every {expected})",
            heard_ns + STALE_AFTER_INTERVALS * interval_ns,
        )
    return verdict(
        HealthState.OFFLINE,
        f"silent for {silent} (expected every {expected})",
        heard_ns + OFFLINE_AFTER_INTERVALS * interval_ns,
    )


def ingest_is_silent(last_report_ns: int | None, report_interval_s: float, now_ns: int) -> bool:
    """Whether the ingest has stopped reporting its self-metrics heartbeat."""
    if last_report_ns is None:
        return True
    allowed_ns = INGEST_SILENT_AFTER_REPORTS * report_interval_s * NS_PER_SECOND
    return now_ns - last_report_ns > allowed_ns


def fleet_health(
    snapshots: Iterable[DeviceSnapshot],
    now_ns: int,
    *,
    ingest_last_report_ns: int | None,
    ingest_report_interval_s: float,
) -> list[DeviceHealth]:
    """Every device's health; all UNKNOWN, with the reason, while the ingest is silent."""
    if ingest_is_silent(ingest_last_report_ns, ingest_report_interval_s, now_ns):
        if ingest_last_report_ns is None:
            reason = "the ingest has never reported"
        else:
            ago = _duration((now_ns - ingest_last_report_ns) / NS_PER_SECOND)
            reason = f"the ingest stopped reporting {ago} ago"
        return [
            DeviceHealth(
                site=s.site,
                device=s.device,
                state=HealthState.UNKNOWN,
                reason=reason,
                since_ns=ingest_last_report_ns,
                last_seen_ns=s.last_telemetry_ns,
            )
            for s in snapshots
        ]
    return [device_health(s, now_ns) for s in snapshots]


def worst_state(states: Sequence[HealthState]) -> HealthState:
    """The roll-up of several states (a site's): the worst one present."""
    for state in SEVERITY_ORDER:
        if state in states:
            return state
    return HealthState.UNKNOWN
