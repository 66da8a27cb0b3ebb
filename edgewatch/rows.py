"""Core room, pure: the rows the store's queries return, parsed into the core's values.

The dashboard and the alerter read the same measurements of the state, raw and ops buckets
(statuses, last-seen, the ingest heartbeat, alert events, operators' actions); parsing their
rows lives here once, so that both judge the fleet the same way without importing each
other. Value in, value out: rows are mappings as influxdb-client's records give them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from edgewatch.alerts import AlertAction, StoredAlertEvent
from edgewatch.health import DeviceAction, DeviceSnapshot
from edgewatch.schema import (
    MEASUREMENT_SHADOW,
    SHADOW_REBUILT_WRITER,
    SHADOW_TIME_NS,
    FieldValue,
    labels_text,
    line,
    parse_labels_text,
)

Row = Mapping[str, Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a device said about itself in its last status messages."""

    model: str | None = None
    model_version: str | None = None
    firmware: str | None = None
    lat: float | None = None
    lon: float | None = None
    # Contract v1.1 labels, sorted by key (a tuple: the info stays hashable).
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Heartbeat:
    last_ns: int | None
    interval_s: float


def row_ns(row: Row) -> int:
    """A row's time in ns: the exact `time_ns` column where the query gives one."""
    exact = row.get("time_ns")
    return int(exact) if exact is not None else time_ns(row["_time"])


def time_ns(value: Any) -> int:
    """A record time (datetime from influxdb-client, or a pandas Timestamp) in ns."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        # A pandas Timestamp is a datetime that also carries nanoseconds.
        nanos = int(getattr(value, "nanosecond", 0))
        return (aware - EPOCH) // ONE_MICROSECOND * 1000 + nanos
    return int(value)


def as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def as_text(value: Any) -> str | None:
    return None if value is None else str(value)


def as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def device_info(said: Mapping[str, Any]) -> DeviceInfo:
    """A device's description from its stored status fields (absent ones None)."""
    return DeviceInfo(
        model=as_text(said.get("model")),
        model_version=as_text(said.get("model_version")),
        firmware=as_text(said.get("firmware")),
        lat=as_float(said.get("lat")),
        lon=as_float(said.get("lon")),
        labels=tuple(sorted(parse_labels_text(said.get("labels")).items())),
    )


def parse_snapshots(
    status_rows: Iterable[Row], seen_rows: Iterable[Row]
) -> tuple[list[DeviceSnapshot], dict[tuple[str, str], DeviceInfo]]:
    """Device snapshots and self-descriptions from the last-status and last-seen queries.

    `status_rows` are (site, device, _field, _value, _time), the field-wise last of
    `device_status`; in the state bucket `_time` is the receipt time and the field `ts_ns`
    the status's own time (rows without `ts_ns`, as raw data has them, count `_time` as the
    status's own time and have no receipt time). `seen_rows` are the state bucket's
    `device_last_seen` fields (`received_ns`, `reading_ns`), or rows without `_field` whose
    `_time` is the newest reading's time (raw data written before the state bucket).
    """
    fields: dict[tuple[str, str], dict[str, tuple[int, Any]]] = {}
    for row in status_rows:
        key = (str(row["site"]), str(row["device"]))
        fields.setdefault(key, {})[str(row["_field"])] = (time_ns(row["_time"]), row["_value"])
    reading: dict[tuple[str, str], int] = {}
    received: dict[tuple[str, str], int] = {}
    for row in seen_rows:
        key = (str(row["site"]), str(row["device"]))
        name = row.get("_field")
        if name is None:
            reading[key] = max(reading.get(key, 0), time_ns(row["_time"]))
            continue
        value = as_int(row.get("_value"))
        if value is None:
            continue
        if name == "received_ns":
            received[key] = max(received.get(key, 0), value)
        elif name == "reading_ns":
            reading[key] = max(reading.get(key, 0), value)
    snapshots: list[DeviceSnapshot] = []
    info: dict[tuple[str, str], DeviceInfo] = {}
    for key in sorted(set(fields) | set(reading) | set(received)):
        status = fields.get(key, {})
        state = status.get("state")
        reason = status.get("reason")
        # A reason belongs to the status it came with; an older one does not explain a newer state.
        reason_text = (
            as_text(reason[1])
            if reason is not None and state is not None and reason[0] == state[0]
            else None
        )
        interval = status.get("interval_s")
        own = status.get("ts_ns")
        status_ns: int | None = None
        status_received_ns: int | None = None
        if state is not None:
            if own is not None and own[0] == state[0]:
                status_ns, status_received_ns = as_int(own[1]), state[0]
            else:
                status_ns = state[0]
        snapshots.append(
            DeviceSnapshot(
                site=key[0],
                device=key[1],
                last_telemetry_ns=reading.get(key),
                status_state=as_text(state[1]) if state else None,
                status_ns=status_ns,
                status_reason=reason_text,
                interval_s=as_float(interval[1]) if interval else None,
                telemetry_received_ns=received.get(key),
                status_received_ns=status_received_ns,
            )
        )
        said = {name: value for name, (_, value) in status.items()}
        info[key] = device_info(said)
    return snapshots, info


SHADOW_DESCRIBED_FIELDS: tuple[str, ...] = (
    "interval_s",
    "model",
    "model_version",
    "firmware",
    "lat",
    "lon",
    "labels",
    "model_sha256",
)


def _newest(rows: list[Row], clock: str, name: str | None = None) -> Row | None:
    """Of one device's shadow rows (one per writer), the one whose `clock` is greatest among
    those that hold `name` (or `clock` itself)."""
    holding = [
        row
        for row in rows
        if as_int(row.get(clock)) is not None and row.get(name or clock) is not None
    ]
    return max(holding, key=lambda row: as_int(row.get(clock)) or 0, default=None)


def parse_shadow(
    rows: Iterable[Row],
) -> tuple[list[DeviceSnapshot], dict[tuple[str, str], DeviceInfo]]:
    """Device snapshots and self-descriptions from the device shadow (`device_shadow`, one
    row per device and writer, fields as columns: edgewatch.schema.shadow_line).

    The same answer as `parse_snapshots` over the status and last-seen history: each group
    of fields is taken from the writer that heard it last (writers are ingest instances and
    the retained copies), so replicas and a broker's old retained birth never hide a newer
    status, and a last will keeps the model and location of the last birth.
    """
    by_device: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        by_device.setdefault((str(row["site"]), str(row["device"])), []).append(row)
    snapshots: list[DeviceSnapshot] = []
    info: dict[tuple[str, str], DeviceInfo] = {}
    for key in sorted(by_device):
        device_rows = by_device[key]
        if len(device_rows) == 1:
            # One writer (one ingest, nothing retained): every group is that row's.
            only = device_rows[0]
            status, seen = only, only
            said = {name: only.get(name) for name in SHADOW_DESCRIBED_FIELDS}
        else:
            status = _newest(device_rows, "status_received_ns", "state") or {}
            seen = _newest(device_rows, "seen_received_ns") or {}
            said = {}
            for name in SHADOW_DESCRIBED_FIELDS:
                holder = _newest(device_rows, "described_received_ns", name)
                if holder is not None:
                    said[name] = holder[name]
        snapshots.append(
            DeviceSnapshot(
                site=key[0],
                device=key[1],
                last_telemetry_ns=as_int(seen.get("seen_reading_ns")),
                status_state=as_text(status.get("state")),
                status_ns=as_int(status.get("status_ts_ns")),
                status_reason=as_text(status.get("reason")) or None,
                interval_s=as_float(said.get("interval_s")),
                telemetry_received_ns=as_int(seen.get("seen_received_ns")),
                status_received_ns=as_int(status.get("status_received_ns")),
            )
        )
        info[key] = device_info(said)
    return snapshots, info


def rebuilt_shadow_lines(
    snapshot: DeviceSnapshot, info: DeviceInfo, *, writer: str = SHADOW_REBUILT_WRITER
) -> list[str]:
    """The shadow of one device as its history says (`edgewatch.rows.parse_snapshots`), for
    a store that has the history but not the shadow (an upgrade). Its own writer, carrying
    the history's receipt times, so whatever an ingest heard since wins over it."""
    tags = {"site": snapshot.site, "device": snapshot.device, "writer": writer}
    out: list[str] = []
    if snapshot.status_state is not None and snapshot.status_ns is not None:
        heard = snapshot.status_received_ns or snapshot.status_ns
        described: dict[str, FieldValue | None] = {
            "interval_s": snapshot.interval_s,
            "model": info.model,
            "model_version": info.model_version,
            "firmware": info.firmware,
            "lat": info.lat,
            "lon": info.lon,
            "labels": labels_text(info.labels),
        }
        has_description = any(value is not None for value in described.values())
        fields: dict[str, FieldValue | None] = {
            "state": snapshot.status_state,
            "reason": snapshot.status_reason or "",
            "status_ts_ns": snapshot.status_ns,
            "status_received_ns": heard,
            **described,
            "described_received_ns": heard if has_description else None,
        }
        out.append(line(MEASUREMENT_SHADOW, tags, fields, SHADOW_TIME_NS))
    seen = snapshot.telemetry_heard_ns
    if seen is not None:
        reading = snapshot.last_telemetry_ns if snapshot.last_telemetry_ns is not None else seen
        fields = {"seen_received_ns": seen, "seen_reading_ns": reading}
        out.append(line(MEASUREMENT_SHADOW, tags, fields, SHADOW_TIME_NS))
    return out


def parse_device_actions(rows: Iterable[Row]) -> list[DeviceAction]:
    """`device_action` rows (pivoted) into actions; rows missing the action are left out."""
    actions = []
    for row in rows:
        if not row.get("action") or not row.get("site") or not row.get("device"):
            continue
        actions.append(
            DeviceAction(
                site=str(row["site"]),
                device=str(row["device"]),
                action=str(row["action"]),
                user=str(row.get("user") or ""),
                ts_ns=row_ns(row),
                note=str(row.get("note") or ""),
            )
        )
    return sorted(actions, key=lambda a: a.ts_ns)


def parse_heartbeat(rows: Iterable[Row], default_interval_s: float) -> Heartbeat:
    """The newest ingest report; its own interval_s says how often to expect the next."""
    newest: Row | None = None
    for row in rows:
        if newest is None or time_ns(row["_time"]) > time_ns(newest["_time"]):
            newest = row
    if newest is None:
        return Heartbeat(None, default_interval_s)
    interval = as_float(newest.get("_value"))
    return Heartbeat(time_ns(newest["_time"]), interval if interval else default_interval_s)


def parse_alert_events(rows: Iterable[Row]) -> list[StoredAlertEvent]:
    events = []
    for row in rows:
        events.append(
            StoredAlertEvent(
                site=str(row["site"]),
                device=str(row["device"]),
                type=str(row["type"]),
                ts_ns=row_ns(row),
                severity=str(row.get("severity") or "info"),
                state=str(row.get("state") or "raised"),
                message=str(row.get("message") or ""),
                value=as_float(row.get("value")),
                received_ns=as_int(row.get("received_ns")),
            )
        )
    return events


def parse_alert_actions(rows: Iterable[Row]) -> list[AlertAction]:
    actions = []
    for row in rows:
        if not row.get("alert_id") or not row.get("action"):
            continue
        snooze = row.get("snooze_until_ns")
        actions.append(
            AlertAction(
                alert_id=str(row["alert_id"]),
                action=str(row["action"]),
                user=str(row.get("user") or ""),
                ts_ns=row_ns(row),
                note=str(row.get("note") or ""),
                snooze_until_ns=int(snooze) if snooze is not None else 0,
            )
        )
    return actions
