"""The device health model of the contract, as pure functions of what was last seen and now.

ONLINE: telemetry within 3 x interval. STALE: silent longer. OFFLINE: an offline status (or
the last will), or silent longer than 10 x interval. UNKNOWN for the whole fleet when the
ingest itself stopped reporting: then nothing we hold says anything about the devices, and
showing the last picture as current would be a lie. Each verdict carries its reason and
since-when.

Whose clock: the last will carries no time, so the ingest stamps it on receipt, while births
and readings carry the device's own clock. Comparing the two would let a device whose clock
runs 2 minutes behind look OFFLINE after every reconnect, and a backlog drained late put
the will after the readings that followed it. So wherever order or silence matters, the
model uses the ingest's receipt times (`*_received_ns`, all on the servers' clock, like
`now_ns`); the device's own times are only a fallback for data stored without them.

Retirement: a device stays listed (OFFLINE once silent) for as long as the store knows it;
only an operator's retire action, recorded and reversible, takes it off the fleet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from edgewatch.contract import DEFAULT_INTERVAL_SECONDS

STALE_AFTER_INTERVALS = 3
OFFLINE_AFTER_INTERVALS = 10
INGEST_SILENT_AFTER_REPORTS = 3
NS_PER_SECOND = 1_000_000_000
DEVICE_ACTION_RETIRE = "retire"
DEVICE_ACTION_REINSTATE = "reinstate"
DEVICE_ACTIONS: tuple[str, ...] = (DEVICE_ACTION_RETIRE, DEVICE_ACTION_REINSTATE)
MAX_DEVICE_NOTE_CHARS = 1000


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
    """What the store knows of one device: its last telemetry and its last status.

    `last_telemetry_ns` and `status_ns` are the messages' own times (the device's clock, or
    the receipt time where the message had none); `telemetry_received_ns` and
    `status_received_ns` are when the ingest received them (its clock). The last status is
    the last one received.
    """

    site: str
    device: str
    last_telemetry_ns: int | None = None
    status_state: str | None = None
    status_ns: int | None = None
    status_reason: str | None = None
    interval_s: float | None = None
    telemetry_received_ns: int | None = None
    status_received_ns: int | None = None

    @property
    def telemetry_heard_ns(self) -> int | None:
        """When the newest telemetry reached us: receipt time, else the reading's own."""
        if self.telemetry_received_ns is not None:
            return self.telemetry_received_ns
        return self.last_telemetry_ns

    @property
    def status_heard_ns(self) -> int | None:
        """When the last status reached us: receipt time, else the status's own."""
        if self.status_received_ns is not None:
            return self.status_received_ns
        return self.status_ns


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
            last_seen_ns=snapshot.telemetry_heard_ns,
        )

    # Receipt times on both sides: a will (stamped on receipt) and a birth or reading
    # (stamped by the device) are never compared on different clocks.
    telemetry_ns = snapshot.telemetry_heard_ns
    status_ns = snapshot.status_heard_ns
    if (
        snapshot.status_state == "offline"
        and status_ns is not None
        and (telemetry_ns is None or status_ns >= telemetry_ns)
    ):
        why = snapshot.status_reason or "device said so"
        if why == "lwt":
            why = "connection lost (last will)"
        return verdict(HealthState.OFFLINE, f"offline status: {why}", status_ns)

    # An online birth counts as a sign of life: a device that just connected is not STALE
    # before its first reading is due.
    heard_ns = telemetry_ns
    if snapshot.status_state == "online" and status_ns is not None:
        heard_ns = max(heard_ns or 0, status_ns)
    if heard_ns is None:
        return verdict(HealthState.OFFLINE, "never reported", None)

    silent_ns = max(0, now_ns - heard_ns)
    if silent_ns <= STALE_AFTER_INTERVALS * interval_ns:
        since = heard_ns
        if snapshot.status_state == "online" and status_ns is not None:
            since = status_ns
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
                last_seen_ns=s.telemetry_heard_ns,
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


@dataclass(frozen=True, slots=True)
class DeviceAction:
    """One operator action on a device (`device_action` in the ops bucket): retire, reinstate."""

    site: str
    device: str
    action: str
    user: str
    ts_ns: int
    note: str = ""


def last_heard_ns(snapshot: DeviceSnapshot) -> int | None:
    """The newest sign of the device on the ingest's clock: telemetry or any status."""
    times = [t for t in (snapshot.telemetry_heard_ns, snapshot.status_heard_ns) if t is not None]
    return max(times, default=None)


def retired_devices(
    actions: Iterable[DeviceAction], heard_ns: Mapping[tuple[str, str], int | None]
) -> dict[tuple[str, str], DeviceAction]:
    """The devices retired now, each with the retire action that holds.

    A device is retired when its newest action is a retire and it has not been heard from
    since (both on the servers' clocks): a device that reports again after its retirement
    is back in the fleet, since retiring says "it is gone", and it plainly is not.
    """
    newest: dict[tuple[str, str], DeviceAction] = {}
    for action in actions:
        key = (action.site, action.device)
        held = newest.get(key)
        if held is None or action.ts_ns >= held.ts_ns:
            newest[key] = action
    retired: dict[tuple[str, str], DeviceAction] = {}
    for key, action in newest.items():
        if action.action != DEVICE_ACTION_RETIRE:
            continue
        heard = heard_ns.get(key)
        if heard is None or heard <= action.ts_ns:
            retired[key] = action
    return retired


def validate_device_action(action: str, note: str, user: str) -> None:
    """Refuse a device action that is not retire/reinstate, an anonymous one, a long note."""
    if action not in DEVICE_ACTIONS:
        raise ValueError(
            f"unknown device action {action!r}; expected one of {', '.join(DEVICE_ACTIONS)}"
        )
    if not user.strip():
        raise ValueError("a device action needs the acting user")
    if len(note) > MAX_DEVICE_NOTE_CHARS:
        raise ValueError(
            f"the note is {len(note)} characters; the limit is {MAX_DEVICE_NOTE_CHARS}"
        )
