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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from edgewatch.contract import is_valid_metric_name, is_valid_name
from edgewatch.schema import (
    MEASUREMENT_TELEMETRY,
    ROLLUP_HOUR_NS,
    ROLLUP_LATE_AFTER_NS,
    ROLLUP_MINUTE_NS,
    FieldValue,
    line,
)

NS_PER_SECOND = 1_000_000_000
LEVEL_1M = "1m"
LEVEL_1H = "1h"
WINDOW_NS: dict[str, int] = {LEVEL_1M: ROLLUP_MINUTE_NS, LEVEL_1H: ROLLUP_HOUR_NS}
# A time chunk of one query: an hour of raw points for either level, so what one query
# returns is bounded by (devices per query) x (an hour of readings).
CHUNK_WINDOWS: dict[str, int] = {LEVEL_1M: 60, LEVEL_1H: 1}


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
#
# A chunk's raw points are read with one InfluxQL statement (InfluxDB 2.x's v1-compatible
# /query on the raw bucket's virtual database: one row per timestamp with every field, one
# series per device) and aggregated here. Measured on the same chunks, that is 4 to 40 times
# faster than letting InfluxDB aggregate, whether by pushed-down Flux (a table per series in
# each of four aggregates and in to()) or by InfluxQL's GROUP BY time (a cursor per series,
# field, function and window): the cost is in cursors, not points (docs/architecture.md,
# "Rollups"; BENCHMARKS.md, "Rollups").

STATS: tuple[str, ...] = ("mean", "min", "max", "count")
SeriesKey = tuple[str, str, int]  # site, device, window start ns
Stats = dict[str, dict[str, object]]  # field -> stat -> value


def device_condition(devices: Sequence[str]) -> str:
    """`device = $d0 OR ...`: bound parameters only, never the names (names are checked too)."""
    for device in devices:
        if not is_valid_name(device):
            raise ValueError(f"device name {device!r} breaks the contract's name pattern")
    return " OR ".join(f"device = $d{i}" for i in range(len(devices)))


def device_params(devices: Sequence[str]) -> dict[str, str]:
    return {f"d{i}": name for i, name in enumerate(devices)}


def points_statement(start_ns: int, stop_ns: int, devices: Sequence[str]) -> str:
    """Every raw telemetry point of a device chunk in [start, stop), one series per device.

    One storage cursor per series and field: the aggregates are computed by the service
    (`stats_from_points`), which measured 4 to 40 times faster than InfluxQL's own
    `mean(*), min(*), max(*), count(*) ... GROUP BY time(1m)` (a cursor per series, field,
    function and window) on the same chunk.
    """
    # Query text holds only integers computed here, parameter names and the fixed statement.
    return (
        "SELECT * FROM telemetry "  # noqa: S608
        f"WHERE time >= {int(start_ns)} AND time < {int(stop_ns)} "
        f"AND ({device_condition(devices)}) GROUP BY *"
    )


@dataclass
class _Fold:
    count: int = 0
    total: float = 0.0
    trues: int = 0
    low: float | None = None
    high: float | None = None
    flag: bool = False

    def add(self, value: object) -> None:
        """One raw value: a boolean counts as 0/1 (and its trues), a number as itself."""
        self.count += 1
        if isinstance(value, bool):
            self.flag = True
            self.trues += value
            number = float(value)
        elif isinstance(value, int | float):
            number = float(value)
            self.total += number
        else:
            return
        self.low = number if self.low is None or number < self.low else self.low
        self.high = number if self.high is None or number > self.high else self.high


def stats_from_points(
    series: Iterable[Mapping[str, object]], window_ns: int
) -> tuple[dict[SeriesKey, Stats], dict[tuple[str, str, int, str], int]]:
    """Raw points (points_statement's series) into stats per (site, device, window) and the
    true counts of boolean fields: the shapes `rollup_lines` and `fold_to_hours` take."""
    folds: dict[SeriesKey, dict[str, _Fold]] = {}
    for one in series:
        tags = one.get("tags") or {}
        assert isinstance(tags, Mapping)
        site, device = str(tags.get("site", "")), str(tags.get("device", ""))
        columns = [str(c) for c in one.get("columns") or []]  # type: ignore[attr-defined]
        if not columns or columns[0] != "time":
            continue
        names = columns[1:]
        for row in one.get("values") or []:  # type: ignore[attr-defined]
            window = int(row[0]) - int(row[0]) % window_ns
            fields = folds.setdefault((site, device, window), {})
            for name, value in zip(names, row[1:], strict=False):
                if value is None:
                    continue
                fold = fields.get(name)
                if fold is None:
                    fold = fields[name] = _Fold()
                fold.add(value)
    stats: dict[SeriesKey, Stats] = {}
    trues: dict[tuple[str, str, int, str], int] = {}
    for key, fields in folds.items():
        for name, fold in fields.items():
            values: dict[str, object] = {"count": fold.count}
            if fold.flag:
                values["min"], values["max"] = bool(fold.low), bool(fold.high)
                trues[(*key, name)] = fold.trues
            else:
                values.update(mean=fold.total / fold.count, min=fold.low, max=fold.high)
            stats.setdefault(key, {})[name] = values
    return stats, trues


@dataclass
class _HourFold:
    count: int = 0
    total: float = 0.0
    low: float | bool | None = None
    high: float | bool | None = None
    flag: bool = False

    def add(self, count: int, mean: object, low: object, high: object) -> None:
        """One minute's stats: its mean weighted by its count, its extremes."""
        self.count += count
        if isinstance(mean, int | float) and not isinstance(mean, bool):
            self.total += float(mean) * count
        if isinstance(low, bool) or isinstance(high, bool):
            self.flag = True
        if isinstance(low, int | float):
            self.low = low if self.low is None else min(self.low, low)
        if isinstance(high, int | float):
            self.high = high if self.high is None else max(self.high, high)


def fold_to_hours(
    stats: Mapping[SeriesKey, Stats], true_counts: Mapping[tuple[str, str, int, str], int]
) -> tuple[dict[SeriesKey, Stats], dict[tuple[str, str, int, str], int]]:
    """Minute stats of whole hours folded into hour stats, exactly as a raw hour would give:
    the mean weighted by each minute's count (so it is the plain mean of the hour's raw
    points), the min of the mins, the max of the maxes, the sum of the counts and trues."""
    folds: dict[SeriesKey, dict[str, _HourFold]] = {}
    for (site, device, window_ns), fields in stats.items():
        hour = folds.setdefault((site, device, floor_to(window_ns, ROLLUP_HOUR_NS)), {})
        for name, values in fields.items():
            count, mean = values.get("count"), values.get("mean")
            low, high = values.get("min"), values.get("max")
            if not isinstance(count, int | float) or count <= 0:
                continue
            hour.setdefault(name, _HourFold()).add(int(count), mean, low, high)
    hours: dict[SeriesKey, Stats] = {}
    for hour_key, hour_folds in folds.items():
        for metric, fold in hour_folds.items():
            folded: dict[str, object] = {"count": fold.count, "min": fold.low, "max": fold.high}
            if not fold.flag:
                folded["mean"] = fold.total / fold.count
            hours.setdefault(hour_key, {})[metric] = folded
    trues: dict[tuple[str, str, int, str], int] = {}
    for (site, device, window_ns, name), count in true_counts.items():
        true_key = (site, device, floor_to(window_ns, ROLLUP_HOUR_NS), name)
        trues[true_key] = trues.get(true_key, 0) + count
    return hours, trues


def rollup_lines(
    stats: Mapping[SeriesKey, Stats], true_counts: Mapping[tuple[str, str, int, str], int]
) -> list[str]:
    """One line per (site, device, window, stat) with a float field per metric.

    A boolean becomes 0/1: its mean is the share of true readings (true count / count), its
    min and max 0 or 1; a window of a boolean without a true count had none true.
    """
    lines = []
    for (site, device, window_ns), fields in sorted(stats.items()):
        per_stat: dict[str, dict[str, FieldValue | None]] = {stat: {} for stat in STATS}
        for name, values in sorted(fields.items()):
            if not is_valid_metric_name(name):
                continue
            count = values.get("count")
            if not isinstance(count, int | float) or count <= 0:
                continue
            low, high = values.get("min"), values.get("max")
            if isinstance(low, bool) or isinstance(high, bool):
                trues = true_counts.get((site, device, window_ns, name), 0)
                mean: object = trues / count
                low, high = float(bool(low)), float(bool(high))
            else:
                mean = values.get("mean")
            for stat, value in (("mean", mean), ("min", low), ("max", high), ("count", count)):
                if isinstance(value, int | float) and not isinstance(value, bool):
                    per_stat[stat][name] = float(value)
        for stat in STATS:
            if per_stat[stat]:
                lines.append(
                    line(
                        MEASUREMENT_TELEMETRY,
                        {"site": site, "device": device, "stat": stat},
                        per_stat[stat],
                        window_ns,
                    )
                )
    return lines


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
