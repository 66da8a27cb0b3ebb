"""The trend range rules: raw, 1-minute or 1-hour data by range, and bounded points."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboard.ranges import (
    MAX_POINTS_PER_SERIES,
    NATIVE_SECONDS,
    PRESETS,
    Source,
    TimeRange,
    choose_source,
    custom_range,
    max_windows,
    parse_iso,
    plan_for,
    preset_range,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("preset", "source"),
    [
        ("1 h", Source.RAW),
        ("24 h", Source.RAW),
        ("7 d", Source.ROLLUP_1M),
        ("30 d", Source.ROLLUP_1H),
        ("90 d", Source.ROLLUP_1H),
        ("1 y", Source.ROLLUP_1H),
    ],
)
def test_each_preset_reads_the_source_its_span_calls_for(preset: str, source: Source) -> None:
    assert plan_for(preset_range(preset, NOW)).source == source


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_keeps_a_series_within_the_point_budget(preset: str) -> None:
    time_range = preset_range(preset, NOW)
    plan = plan_for(time_range)
    assert max_windows(time_range, plan) <= MAX_POINTS_PER_SERIES
    # A window never splits a rollup bucket.
    assert plan.window_seconds % NATIVE_SECONDS[plan.source] == 0


@pytest.mark.parametrize(
    "seconds", [1, 59, 3600, 86400, 86401, 7 * 86400, 400 * 86400, 1800 * 86400]
)
def test_any_span_is_bounded(seconds: int) -> None:
    time_range = TimeRange(NOW - timedelta(seconds=seconds), NOW)
    assert max_windows(time_range, plan_for(time_range)) <= MAX_POINTS_PER_SERIES


def test_short_ranges_are_not_coarser_than_needed() -> None:
    plan = plan_for(preset_range("1 h", NOW))
    assert plan.window_seconds == 5  # 3600 s / 999 points, rounded up to a readable window


def test_gaps_are_two_windows() -> None:
    plan = plan_for(preset_range("90 d", NOW))
    assert plan.gap_seconds == 2 * plan.window_seconds


def test_boundaries_of_the_sources() -> None:
    assert choose_source(timedelta(hours=24)) == Source.RAW
    assert choose_source(timedelta(hours=24, seconds=1)) == Source.ROLLUP_1M
    assert choose_source(timedelta(days=7, seconds=1)) == Source.ROLLUP_1H


def test_custom_range_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="before its end"):
        custom_range(NOW, NOW - timedelta(hours=1), NOW)
    with pytest.raises(ValueError, match="future"):
        custom_range(NOW + timedelta(days=1), NOW + timedelta(days=2), NOW)
    with pytest.raises(ValueError, match="five years"):
        custom_range(NOW - timedelta(days=6 * 366), NOW, NOW)


def test_custom_range_takes_naive_times_as_utc_and_clips_the_future() -> None:
    time_range = custom_range(datetime(2026, 11, 1), datetime(2026, 12, 31), NOW)
    assert time_range.start == datetime(2026, 11, 1, tzinfo=UTC)
    assert time_range.stop <= NOW + timedelta(minutes=5)


def test_unknown_preset_and_bad_iso_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown range preset"):
        preset_range("2 weeks", NOW)
    with pytest.raises(ValueError):
        parse_iso("yesterday")
    assert parse_iso("2026-11-27T10:00:00+02:00") == datetime(2026, 11, 27, 8, tzinfo=UTC)
