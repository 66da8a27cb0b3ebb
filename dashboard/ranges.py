"""dashboard room: time ranges and the resolution a trend chart reads, as pure functions.

Long ranges freeze dashboards when every raw point goes to the browser (thingsboard#8489),
and a tool that does not switch to rolled-up data by range reads far too much (influxdb#4605).
So the range picks the source (raw, 1-minute or 1-hour rollups) and an aggregation window
that keeps every series at or under `MAX_POINTS_PER_SERIES`; and since each bucket keeps its
data for a different time, a range that starts before a bucket's retention reads the next
coarser one that still holds it. No I/O, no clock: `now` is passed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

MAX_POINTS_PER_SERIES = 1000
# A window that has no point for longer than this many windows is drawn as a gap.
GAP_WINDOWS = 2.0

# Raw data lives 30 days; past a day of it we would read tens of thousands of points per
# series only to average them away, so the rollups take over.
RAW_MAX_SPAN = timedelta(hours=24)
ROLLUP_1M_MAX_SPAN = timedelta(days=7)
RAW_RETENTION = timedelta(days=30)
ROLLUP_1M_RETENTION = timedelta(days=400)
# A custom range longer than this is refused: nothing is kept that could fill it usefully.
MAX_SPAN = timedelta(days=5 * 366)
# Device clocks may run up to 5 minutes ahead (the contract's skew limit).
MAX_FUTURE = timedelta(minutes=5)

PRESETS: dict[str, timedelta] = {
    "1 h": timedelta(hours=1),
    "24 h": timedelta(hours=24),
    "7 d": timedelta(days=7),
    "30 d": timedelta(days=30),
    "90 d": timedelta(days=90),
    "1 y": timedelta(days=365),
}
CUSTOM = "custom"
DEFAULT_PRESET = "24 h"

# Windows people can read on an axis; each is a multiple of the one before it that matters
# (60 s for the 1-minute rollup, 3600 s for the 1-hour one), so a window never splits a
# rollup bucket.
NICE_WINDOWS_SECONDS: tuple[int, ...] = (
    1, 2, 5, 10, 15, 30,
    60, 120, 300, 600, 900, 1800,
    3600, 7200, 10800, 21600, 43200,
    86400, 172800, 604800,
)  # fmt: skip


class Source(StrEnum):
    """Where a trend reads from: the raw bucket or one of the rollup buckets."""

    RAW = "raw"
    ROLLUP_1M = "1m"
    ROLLUP_1H = "1h"


NATIVE_SECONDS: dict[Source, int] = {Source.RAW: 1, Source.ROLLUP_1M: 60, Source.ROLLUP_1H: 3600}


@dataclass(frozen=True, slots=True)
class TimeRange:
    """A validated half-open range [start, stop) in UTC."""

    start: datetime
    stop: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.stop.tzinfo is None:
            raise ValueError("a time range needs timezone-aware times")
        if self.start >= self.stop:
            raise ValueError("the start of the range must be before its end")

    @property
    def span(self) -> timedelta:
        return self.stop - self.start


@dataclass(frozen=True, slots=True)
class QueryPlan:
    """What to read for a range: the source and the aggregation window."""

    source: Source
    window_seconds: int

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.window_seconds)

    @property
    def gap_seconds(self) -> float:
        """Spacing beyond which two neighbouring points are not joined by a line."""
        return GAP_WINDOWS * self.window_seconds

    @property
    def label(self) -> str:
        names = {Source.RAW: "raw data", Source.ROLLUP_1M: "1-minute rollups",
                 Source.ROLLUP_1H: "1-hour rollups"}  # fmt: skip
        return f"{names[self.source]}, {format_window(self.window_seconds)} windows"


def format_window(seconds: int) -> str:
    """A window as people say it: 30 s, 5 min, 2 h, 1 d."""
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


SOURCE_ORDER: tuple[Source, ...] = (Source.RAW, Source.ROLLUP_1M, Source.ROLLUP_1H)
# How long each bucket keeps data (None: forever); stack/bootstrap.py sets the same.
RETENTION: dict[Source, timedelta | None] = {
    Source.RAW: RAW_RETENTION,
    Source.ROLLUP_1M: ROLLUP_1M_RETENTION,
    Source.ROLLUP_1H: None,
}


def choose_source(span: timedelta) -> Source:
    """By span alone: raw up to a day, 1-minute rollups up to a week, 1-hour rollups beyond."""
    if span <= RAW_MAX_SPAN:
        return Source.RAW
    if span <= ROLLUP_1M_MAX_SPAN:
        return Source.ROLLUP_1M
    return Source.ROLLUP_1H


def holds(source: Source, start: datetime, now: datetime) -> bool:
    """Whether `source` still keeps data from `start` on (InfluxDB expires whole shards past
    the retention, so nothing older than `now - retention` is certain to be there)."""
    retention = RETENTION[source]
    return retention is None or start >= now - retention


def source_for(time_range: TimeRange, now: datetime) -> Source:
    """The source the span calls for, or the first coarser one that still holds the start:
    a 1-day range 40 days ago reads the 1-minute rollups, raw data being kept 30 days."""
    wanted = SOURCE_ORDER.index(choose_source(time_range.span))
    for source in SOURCE_ORDER[wanted:]:
        if holds(source, time_range.start, now):
            return source
    return Source.ROLLUP_1H


def window_for(span: timedelta, source: Source, max_points: int = MAX_POINTS_PER_SERIES) -> int:
    """The smallest readable window that keeps a series of `span` at `max_points` or fewer.

    Windows are aligned to the epoch, so a range can touch one more window than
    span / window; we leave room for it.
    """
    if max_points < 2:
        raise ValueError("a series needs room for at least two points")
    needed = math.ceil(span.total_seconds() / (max_points - 1))
    floor = max(needed, NATIVE_SECONDS[source])
    for seconds in NICE_WINDOWS_SECONDS:
        if seconds >= floor:
            return seconds
    # Past a week per point: whole weeks, still a multiple of every native resolution.
    weeks = math.ceil(floor / 604800)
    return weeks * 604800


def plan_for(
    time_range: TimeRange,
    max_points: int = MAX_POINTS_PER_SERIES,
    *,
    now: datetime | None = None,
) -> QueryPlan:
    """The source and window for a range: bounded points per series, whatever the range.

    `now` decides which buckets still hold the range's start; it defaults to the range's end,
    which is right for the presets (they end now) but not for a custom range in the past.
    """
    source = source_for(time_range, now if now is not None else time_range.stop)
    return QueryPlan(source=source, window_seconds=window_for(time_range.span, source, max_points))


def max_windows(time_range: TimeRange, plan: QueryPlan) -> int:
    """The most aggregation windows (so points) a series of this range can have."""
    return math.ceil(time_range.span.total_seconds() / plan.window_seconds) + 1


def preset_range(preset: str, now: datetime) -> TimeRange:
    """The range a preset label stands for, ending now."""
    if preset not in PRESETS:
        raise ValueError(f"unknown range preset {preset!r}; expected one of {', '.join(PRESETS)}")
    return TimeRange(start=now - PRESETS[preset], stop=now)


def custom_range(start: datetime, stop: datetime, now: datetime) -> TimeRange:
    """A user's range, checked: ordered, not in the future, not longer than we can hold."""
    start, stop = as_utc(start), as_utc(stop)
    if start >= stop:
        raise ValueError("the start of the range must be before its end")
    if start > now + MAX_FUTURE:
        raise ValueError("the range starts in the future")
    if stop - start > MAX_SPAN:
        raise ValueError("the range is longer than five years")
    return TimeRange(start=start, stop=min(stop, now + MAX_FUTURE))


def as_utc(value: datetime) -> datetime:
    """Naive times are taken as UTC (what the pickers and the query string carry)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_iso(value: str) -> datetime:
    """A time from a query string; raises ValueError for anything that is not ISO 8601."""
    return as_utc(datetime.fromisoformat(value))
