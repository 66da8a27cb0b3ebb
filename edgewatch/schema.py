"""The InfluxDB schema (docs/architecture.md) and its line protocol, as pure functions.

Kept apart from both the decoder and the client, as influxdb-client's own IoT example does,
so the exact bytes we store are unit-tested. Numbers are always written as floats so a metric
never changes field type (InfluxDB refuses a float into an integer field and vice versa).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator, Mapping

from edgewatch.models import AlertEvent, DeviceMessage, Rejected, StatusEvent, Telemetry

MEASUREMENT_TELEMETRY = "telemetry"
MEASUREMENT_SEQ = "telemetry_seq"
MEASUREMENT_STATUS = "device_status"
MEASUREMENT_ALERT = "alert_event"
MEASUREMENT_DEAD_LETTER = "dead_letter"
MEASUREMENT_INGEST_STATS = "ingest_stats"
MEASUREMENT_ALERT_ACTION = "alert_action"
MEASUREMENT_DEVICE_ACTION = "device_action"
MEASUREMENT_LAST_SEEN = "device_last_seen"
MEASUREMENT_RELEASE_ACTION = "release_action"
MEASUREMENT_LABEL_ACTION = "label_action"
MEASUREMENT_SHADOW = "device_shadow"

# The device shadow (docs/architecture.md, "The current-state path"): one point per device
# and writer, always at this time, so every write overwrites it field by field and the
# series never holds more than one point. A fleet of any size is then read as one row per
# device (InfluxQL `SELECT *`), where the last point of every field of every device cost
# ~50 µs a series inside influxd (5 s for 10,000 devices).
SHADOW_TIME_NS = 0
# Retained messages are the broker's copies, written by every ingest that subscribes anew:
# they get a writer of their own, so that an old retained birth can never overwrite a newer
# status an ingest wrote; readers take each group of fields from the writer that heard it last.
SHADOW_RETAINED_WRITER = "retained"
# What `edgewatch stack rebuild-shadow` writes from the history, after an upgrade.
SHADOW_REBUILT_WRITER = "rebuilt"

# The state bucket's last-seen is one point per device per hour of receipt: each telemetry
# message overwrites its hour's point, so the newest point holds the exact newest receipt,
# and a year costs 8,760 points per device instead of one per message.
LAST_SEEN_GRANULARITY_NS = 3600 * 1_000_000_000
MEASUREMENT_ROLLUP_DIRTY = "rollup_dirty"

# A reading is late for the rollups when it reaches the ingest this long after its minute
# closed; the rollup service aggregates a closed minute only after this (plus a grace for
# the write), so every reading is either in the minute's first aggregate or marked dirty.
ROLLUP_LATE_AFTER_NS = 60 * 1_000_000_000
ROLLUP_MINUTE_NS = 60 * 1_000_000_000
ROLLUP_HOUR_NS = 3600 * 1_000_000_000

ROLLUP_STATS: tuple[str, ...] = ("mean", "min", "max")

FieldValue = float | int | bool | str
# Distinct keys held escaped: metric names plus a fleet's sites and devices.
ESCAPE_CACHE_SIZE = 65536


@functools.lru_cache(maxsize=ESCAPE_CACHE_SIZE)
def _escape_key(value: str) -> str:
    """Tag keys, tag values and field keys: escape commas, equals signs and spaces.

    Cached: the same metric names, sites and devices come in every message, and five
    `str.replace` calls per key were the line builder's largest cost (bench/client_cost.py).
    """
    return (
        value.replace("\\", "\\\\")
        .replace(",", "\\,")
        .replace("=", "\\=")
        .replace(" ", "\\ ")
        .replace("\n", "\\n")
    )


def _escape_string(value: str) -> str:
    # Line protocol cannot carry a raw newline inside a string field; we keep it escaped.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_field(value: FieldValue) -> str:
    """One field value. `int` is written as an integer (`17i`); use float() for metrics."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("line protocol cannot carry NaN or infinity")
        return repr(value)
    return f'"{_escape_string(value)}"'


def line(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue | None],
    ts_ns: int,
) -> str:
    """One line of line protocol; tags sorted (InfluxDB's preferred order), None fields dropped."""
    field_part = ",".join(
        f"{_escape_key(key)}={format_field(value)}"
        for key, value in fields.items()
        if value is not None
    )
    if not field_part:
        raise ValueError(f"a {measurement} point needs at least one field")
    return f"{series_key(measurement, tags)} {field_part} {ts_ns}"


def series_key(measurement: str, tags: Mapping[str, str]) -> str:
    """`measurement,tag=value,...`: a line's series, tags sorted, empty ones left out."""
    tag_part = "".join(
        f",{_escape_key(key)}={_escape_key(tags[key])}" for key in sorted(tags) if tags[key]
    )
    return f"{_escape_key(measurement)}{tag_part}"


@functools.lru_cache(maxsize=ESCAPE_CACHE_SIZE)
def _device_series(measurement: str, site: str, device: str, writer: str = "") -> str:
    """A device's series in `measurement` (and the writer's, for the shadow); cached, as
    sites and devices repeat in every message."""
    return series_key(measurement, {"site": site, "device": device, "writer": writer})


def _metric_field(name: str, value: float | int | bool) -> str:
    """One metric as `line` writes it from `telemetry_lines`' fields: a boolean as such,
    any number as a float."""
    if value is True:
        return f"{_escape_key(name)}=true"
    if value is False:
        return f"{_escape_key(name)}=false"
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("line protocol cannot carry NaN or infinity")
    return f"{_escape_key(name)}={number!r}"


def telemetry_lines(message: Telemetry) -> Iterator[str]:
    # The same bytes `line` would write; formatted here directly because these are the lines
    # of every reading (the ingest's largest per-message cost, bench/client_cost.py).
    series = _device_series(MEASUREMENT_TELEMETRY, message.site, message.device)
    seq_series = _device_series(MEASUREMENT_SEQ, message.site, message.device)
    for reading in message.readings:
        if not reading.metrics:
            raise ValueError(f"a {MEASUREMENT_TELEMETRY} point needs at least one field")
        fields = ",".join([_metric_field(name, value) for name, value in reading.metrics.items()])
        yield f"{series} {fields} {reading.ts_ns}"
        if reading.seq is not None:
            yield f"{seq_series} seq={reading.seq}i {reading.ts_ns}"


def labels_text(labels: tuple[tuple[str, str], ...]) -> str | None:
    """Labels as one string field: compact JSON with sorted keys (None when there are none).

    One field, not one tag per label: labels are few per device but unbounded across a
    fleet, and tags would multiply the series (and the schema) with every new key.
    """
    if not labels:
        return None
    return json.dumps(dict(labels), separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def parse_labels_text(text: object) -> dict[str, str]:
    """The inverse of `labels_text` for readers; anything unreadable is no labels."""
    if not isinstance(text, str) or not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def model_fields(message: StatusEvent) -> dict[str, str | None]:
    """The contract v1.1 fields of a status line (absent ones are left out)."""
    return {"model_sha256": message.model_sha256, "labels": labels_text(message.labels)}


def _status_fields(message: StatusEvent) -> dict[str, FieldValue | None]:
    """A status's fields as stored (absent ones are None, which `line` leaves out)."""
    return {
        "state": message.state,
        "reason": message.reason,
        "interval_s": message.interval_s,
        "model": message.model,
        "model_version": message.model_version,
        "firmware": message.firmware,
        "lat": message.lat,
        "lon": message.lon,
        **model_fields(message),
    }


def status_line(message: StatusEvent) -> str:
    return line(
        MEASUREMENT_STATUS,
        {"site": message.site, "device": message.device},
        _status_fields(message),
        message.ts_ns,
    )


def alert_line(message: AlertEvent) -> str:
    return line(
        MEASUREMENT_ALERT,
        {"site": message.site, "device": message.device, "type": message.type},
        {
            "severity": message.severity,
            "state": message.state,
            "message": message.message,
            "value": message.value,
        },
        message.ts_ns,
    )


def _minute_end(ts_ns: int) -> int:
    return ts_ns - ts_ns % ROLLUP_MINUTE_NS + ROLLUP_MINUTE_NS


def late_hours(message: Telemetry, received_ns: int) -> list[int]:
    """Start (ns) of each hour holding a reading that came too late for its minute's rollup.

    Late: received `ROLLUP_LATE_AFTER_NS` or more after the end of the reading's minute.
    """
    hours = {
        reading.ts_ns - reading.ts_ns % ROLLUP_HOUR_NS
        for reading in message.readings
        if received_ns >= _minute_end(reading.ts_ns) + ROLLUP_LATE_AFTER_NS
    }
    return sorted(hours)


def rollup_markers(message: Telemetry, received_ns: int) -> list[tuple[int, str]]:
    """Each hour the message touches: (when its readings turn late, its `rollup_dirty` line).

    A reading is late once `ROLLUP_LATE_AFTER_NS` passed after its minute closed; what counts
    is when it is *stored*, not when it was received (the rollup service aggregates a minute
    at about that time). So the ingest keeps these with the message and writes the markers
    whose time has come when it writes the readings: a message that waited in the ingest's
    journal through an InfluxDB outage marks its hours, though it arrived in time.
    """
    deadlines: dict[int, int] = {}
    for reading in message.readings:
        hour = reading.ts_ns - reading.ts_ns % ROLLUP_HOUR_NS
        due = _minute_end(reading.ts_ns) + ROLLUP_LATE_AFTER_NS
        deadlines[hour] = min(due, deadlines.get(hour, due))
    series = _device_series(MEASUREMENT_ROLLUP_DIRTY, message.site, message.device)
    return [
        (due, f"{series} received_ns={received_ns}i {hour}")
        for hour, due in sorted(deadlines.items())
    ]


def rollup_dirty_lines(message: Telemetry, received_ns: int) -> list[str]:
    """One marker per (device, hour) that got late readings: the rollup service re-aggregates
    that device's minutes of the hour and the hour itself (rollup/, docs/architecture.md).

    Stamped with the hour's start, so a device's markers are one point per hour; the field is
    the receipt time, so a later late message for the same hour changes the point and the
    service sees the hour as dirty again (its done-record holds the value it aggregated).
    """
    tags = {"site": message.site, "device": message.device}
    return [
        line(MEASUREMENT_ROLLUP_DIRTY, tags, {"received_ns": received_ns}, hour)
        for hour in late_hours(message, received_ns)
    ]


def message_lines(message: DeviceMessage, *, received_ns: int | None = None) -> list[str]:
    """All lines one accepted message becomes.

    With `received_ns` (when the ingest got the message), a telemetry message whose readings
    came late for the rollups also gets its `rollup_dirty` markers, last, so that a marker is
    never stored without the readings it points at.
    """
    if isinstance(message, Telemetry):
        lines = list(telemetry_lines(message))
        if received_ns is not None:
            lines.extend(rollup_dirty_lines(message, received_ns))
        return lines
    if isinstance(message, AlertEvent):
        return [alert_line(message)]
    return [status_line(message)]


def state_lines(message: DeviceMessage, received_ns: int, *, writer: str) -> list[str]:
    """The lines one accepted message adds to the state bucket (infinite retention).

    What must outlive raw retention: every status (the device's inventory: model, firmware,
    location, interval_s) and every alert event, which are few, and a coarse last-seen per
    device. Each carries the ingest's receipt time (`received_ns`), the one clock health
    and the alert fold compare (docs/architecture.md). Statuses are stamped with their
    receipt time, so the last one stored is the last one received (the last will has no
    time of its own); alert events keep their own time, which their id is made of.
    """
    tags = {"site": message.site, "device": message.device}
    if isinstance(message, Telemetry):
        newest = max(reading.ts_ns for reading in message.readings)
        hour_ns = received_ns - received_ns % LAST_SEEN_GRANULARITY_NS
        series = _device_series(MEASUREMENT_LAST_SEEN, message.site, message.device)
        return [
            f"{series} received_ns={received_ns}i,reading_ns={newest}i {hour_ns}",
            shadow_line(message, received_ns, writer=writer),
        ]
    if isinstance(message, AlertEvent):
        return [
            line(
                MEASUREMENT_ALERT,
                {**tags, "type": message.type},
                {
                    "severity": message.severity,
                    "state": message.state,
                    "message": message.message,
                    "value": message.value,
                    "received_ns": received_ns,
                },
                message.ts_ns,
            )
        ]
    return [
        line(
            MEASUREMENT_STATUS,
            tags,
            {**_status_fields(message), "ts_ns": message.ts_ns},
            received_ns,
        ),
        shadow_line(message, received_ns, writer=writer),
    ]


def shadow_line(message: Telemetry | StatusEvent, received_ns: int, *, writer: str) -> str:
    """The device shadow's update for one message (see `SHADOW_TIME_NS`).

    Telemetry sets the seen fields. A status always sets its state, reason (empty when it
    has none: an older reason must not explain a newer state), own time and receipt time;
    its descriptive fields only when it carries them, so a last will, which carries state
    and reason alone, leaves the model and location of the last birth in place, and
    `described_received_ns` says when those were last set.
    """
    if isinstance(message, Telemetry):
        newest = max(reading.ts_ns for reading in message.readings)
        series = _device_series(MEASUREMENT_SHADOW, message.site, message.device, writer)
        return (
            f"{series} seen_received_ns={received_ns}i,seen_reading_ns={newest}i {SHADOW_TIME_NS}"
        )
    tags = {"site": message.site, "device": message.device, "writer": writer}
    described = {
        name: value
        for name, value in _status_fields(message).items()
        if name not in ("state", "reason") and value is not None
    }
    fields = {
        "state": message.state,
        "reason": message.reason or "",
        "status_ts_ns": message.ts_ns,
        "status_received_ns": received_ns,
        **described,
        "described_received_ns": received_ns if described else None,
    }
    return line(MEASUREMENT_SHADOW, tags, fields, SHADOW_TIME_NS)


def device_action_line(
    *, site: str, device: str, action: str, user: str, note: str, ts_ns: int
) -> str:
    """An operator's retire or reinstate of a device (ops bucket)."""
    return line(
        MEASUREMENT_DEVICE_ACTION,
        {"site": site, "device": device},
        {"action": action, "user": user, "note": note},
        ts_ns,
    )


def release_action_line(
    *, model: str, version: str, sha256: str, user: str, note: str, ts_ns: int
) -> str:
    """An operator's registration of a model release (ops bucket): the hash devices must run."""
    return line(
        MEASUREMENT_RELEASE_ACTION,
        {"model": model, "version": version},
        {"action": "register", "sha256": sha256, "user": user, "note": note},
        ts_ns,
    )


def label_action_line(
    *, site: str, device: str, key: str, value: str, action: str, user: str, ts_ns: int
) -> str:
    """An operator's label on a device (ops bucket): `set` key=value, or `remove` the key."""
    return line(
        MEASUREMENT_LABEL_ACTION,
        {"site": site, "device": device},
        {"action": action, "key": key, "value": value, "user": user},
        ts_ns,
    )


def dead_letter_line(rejected: Rejected) -> str:
    return line(
        MEASUREMENT_DEAD_LETTER,
        {"code": rejected.code},
        {
            "topic": rejected.topic,
            "reason": rejected.reason,
            "payload": rejected.payload_excerpt,
        },
        rejected.received_ns,
    )


def ingest_stats_line(instance: str, stats: Mapping[str, float | int], ts_ns: int) -> str:
    fields: dict[str, FieldValue | None] = {
        key: (float(value) if isinstance(value, float) else int(value))
        for key, value in stats.items()
    }
    return line(MEASUREMENT_INGEST_STATS, {"instance": instance}, fields, ts_ns)


def alert_action_line(
    *,
    site: str,
    device: str,
    alert_type: str,
    alert_id: str,
    action: str,
    user: str,
    note: str,
    snooze_until_ns: int,
    ts_ns: int,
) -> str:
    return line(
        MEASUREMENT_ALERT_ACTION,
        {"site": site, "device": device, "type": alert_type},
        {
            "alert_id": alert_id,
            "action": action,
            "user": user,
            "note": note,
            "snooze_until_ns": snooze_until_ns,
        },
        ts_ns,
    )
