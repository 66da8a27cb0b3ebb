"""rollup room, pure part: which windows a run aggregates, in which chunks, with which query.

Value in, value out: no clock (now is passed), no InfluxDB. The service (`rollup.service`)
asks this module what to do and does it. Times are integer nanoseconds since the epoch.

Two paths fill the 1-minute and 1-hour rollup buckets (docs/architecture.md, "Rollups"):
- the frontier: every closed window, once, when it has been closed for `delay` (the ingest's
  late threshold plus a grace for its write), in time chunks from the stored progress on;
- the dirty hours: the (device, hour) pairs the ingest marked because a reading came later
  than the threshold; each is re-aggregated (its minutes and the hour) below the frontier.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from edgewatch.contract import is_valid_metric_name, is_valid_name
from edgewatch.schema import ROLLUP_HOUR_NS, ROLLUP_LATE_AFTER_NS, ROLLUP_MINUTE_NS

NS_PER_SECOND = 1_000_000_000
LEVEL_1M = "1m"
LEVEL_1H = "1h"
WINDOW_NS: dict[str, int] = {LEVEL_1M: ROLLUP_MINUTE_NS, LEVEL_1H: ROLLUP_HOUR_NS}
# A time chunk of one query: an hour of minutes, or a day of hours (the hour level reads
# raw points too, pushed down, so a day of them per device chunk stays bounded).
CHUNK_WINDOWS: dict[str, int] = {LEVEL_1M: 60, LEVEL_1H: 24}


def floor_to(ts_ns: int, window_ns: int) -> int:
    return ts_ns - ts_ns % window_ns


def closed_until(now_ns: int, level: str, grace_ns: int) -> int:
    """End of the newest window of `level` that is safe to aggregate at `now_ns`.

    A window is safe once it closed `ROLLUP_LATE_AFTER_NS + grace_ns` ago: any reading that
    reaches the ingest later than the threshold carries a dirty marker instead, and the grace
    covers the ingest's write of the readings that came in time.
    """
    return floor_to(now_ns - ROLLUP_LATE_AFTER_NS - grace_ns, WINDOW_NS[level])


def frontier_chunks(through_ns: int, until_ns: int, level: str) -> list[tuple[int, int]]:
    """[start, stop) time chunks from the stored progress to the newest safe window."""
    window = WINDOW_NS[level]
    step = window * CHUNK_WINDOWS[level]
    chunks = []
    start = floor_to(through_ns, window)
    while start < until_ns:
        stop = min(until_ns, floor_to(start, step) + step)
        chunks.append((start, stop))
        start = stop
    return chunks


def first_progress(now_ns: int, level: str, grace_ns: int, catch_up_ns: int) -> int:
    """Where a level starts when no progress is stored yet: `catch_up_ns` before the frontier."""
    return closed_until(now_ns, level, grace_ns) - floor_to(catch_up_ns, WINDOW_NS[level])


def chunked(items: Sequence[str], size: int) -> list[list[str]]:
    if size < 1:
        raise ValueError("a device chunk needs at least one device")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


# ------------------------------------------------------------------------------ queries


def predicate(column: str, operator: str, joiner: str, names: Sequence[str], prefix: str) -> str:
    """`r.<column> <op> _<prefix>0 <joiner> ...`: parameter names only, never the values."""
    return f" {joiner} ".join(f"r.{column} {operator} _{prefix}{i}" for i in range(len(names)))


@dataclass(frozen=True, slots=True)
class RollupQuery:
    """One Flux script (a rendered template) and its parameters: one chunk of one level."""

    template: str
    text_parts: Mapping[str, str]
    params: Mapping[str, object]


def rollup_queries(
    *,
    raw_bucket: str,
    target_bucket: str,
    level: str,
    start_ns: int,
    stop_ns: int,
    devices: Sequence[str],
    boolean_fields: Iterable[str],
) -> list[RollupQuery]:
    """The numeric (pushed down) and, when there are any, boolean queries for one chunk."""
    if not devices:
        return []
    for device in devices:
        if not is_valid_name(device):
            raise ValueError(f"device name {device!r} breaks the contract's name pattern")
    flags = sorted(set(boolean_fields))
    for flag in flags:
        if not is_valid_metric_name(flag):
            raise ValueError(f"field name {flag!r} breaks the contract's metric name pattern")
    device_params = {f"d{i}": name for i, name in enumerate(devices)}
    flag_params = {f"b{i}": name for i, name in enumerate(flags)}
    base = {
        "raw": raw_bucket,
        "target": target_bucket,
        "start": as_datetime(start_ns),
        "stop": as_datetime(stop_ns),
        "every": timedelta(microseconds=WINDOW_NS[level] // 1000),
        **device_params,
    }
    devices_text = predicate("device", "==", "or", devices, "d")
    numeric_text = predicate("_field", "!=", "and", flags, "b") if flags else "true"
    queries = [
        RollupQuery(
            "rollup_numeric",
            {"devices": devices_text, "numeric": numeric_text},
            {**base, **flag_params},
        )
    ]
    if flags:
        queries.append(
            RollupQuery(
                "rollup_bool",
                {"devices": devices_text, "flags": predicate("_field", "==", "or", flags, "b")},
                {**base, **flag_params},
            )
        )
    return queries


def render(template_text: str, parts: Mapping[str, str]) -> str:
    """Fill a query file's ${...} with predicates built here (parameter names only)."""
    return string.Template(template_text).substitute(parts)


def as_datetime(ts_ns: int) -> datetime:
    """A UTC datetime for a Flux time parameter; rollup bounds are whole seconds."""
    return datetime.fromtimestamp(ts_ns // NS_PER_SECOND, tz=UTC) + timedelta(
        microseconds=(ts_ns % NS_PER_SECOND) // 1000
    )


# ---------------------------------------------------------------------------- dirty hours


@dataclass(frozen=True, slots=True, order=True)
class DirtyHour:
    """A (device, hour) the ingest marked: `received_ns` is the marker's value when read."""

    hour_ns: int
    site: str
    device: str
    received_ns: int


@dataclass(frozen=True, slots=True)
class DirtyJob:
    """One query's worth of dirty hours: the same hour, up to a device chunk of devices."""

    hour_ns: int
    devices: tuple[str, ...]
    minutes_stop_ns: int  # minutes of the hour below the 1m frontier; the rest is its job
    hour_closed: bool  # whether the hour is below the 1h frontier (else the frontier does it)
    marks: tuple[DirtyHour, ...]


def dirty_jobs(
    marks: Iterable[DirtyHour], *, through_1m_ns: int, through_1h_ns: int, chunk_size: int
) -> list[DirtyJob]:
    """Group dirty hours by hour, then devices in chunks; oldest hour first.

    Windows at or past a frontier are left to it: it reads every point when it gets there.
    """
    by_hour: dict[int, list[DirtyHour]] = {}
    for mark in marks:
        by_hour.setdefault(mark.hour_ns, []).append(mark)
    jobs = []
    for hour_ns in sorted(by_hour):
        hour_marks = sorted(by_hour[hour_ns])
        names = sorted({m.device for m in hour_marks})
        stop = min(hour_ns + ROLLUP_HOUR_NS, through_1m_ns)
        for part in chunked(names, chunk_size):
            members = set(part)
            jobs.append(
                DirtyJob(
                    hour_ns=hour_ns,
                    devices=tuple(part),
                    minutes_stop_ns=max(stop, hour_ns),
                    hour_closed=hour_ns + ROLLUP_HOUR_NS <= through_1h_ns,
                    marks=tuple(m for m in hour_marks if m.device in members),
                )
            )
    return jobs


def parse_dirty(rows: Iterable[Mapping[str, object]]) -> list[DirtyHour]:
    """Rows of pending.flux into dirty hours; rows with a name outside the contract are skipped
    (a marker is only ever written for a decoded, valid message)."""
    marks = []
    for row in rows:
        site, device = str(row.get("site")), str(row.get("device"))
        received = row.get("received_ns")
        when = row.get("_time")
        if not (is_valid_name(site) and is_valid_name(device)) or received is None:
            continue
        if not isinstance(when, datetime) or not isinstance(received, int | float):
            continue
        marks.append(
            DirtyHour(
                hour_ns=floor_to(datetime_ns(when), ROLLUP_HOUR_NS),
                site=site,
                device=device,
                received_ns=int(received),
            )
        )
    return marks


def datetime_ns(value: datetime) -> int:
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1000


def seconds_ns(seconds: float) -> int:
    return math.floor(seconds * NS_PER_SECOND)
