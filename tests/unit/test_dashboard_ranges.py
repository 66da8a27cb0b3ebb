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
    source_for,
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


def test_a_day_forty_days_ago_reads_the_minute_rollups_raw_being_expired() -> None:
    day = TimeRange(NOW - timedelta(days=40), NOW - timedelta(days=39))
    plan = plan_for(day, now=NOW)
    assert plan.source == Source.ROLLUP_1M
    assert max_windows(day, plan) <= MAX_POINTS_PER_SERIES


def test_a_recent_day_still_reads_raw_data() -> None:
    day = TimeRange(NOW - timedelta(days=29), NOW - timedelta(days=28))
    assert plan_for(day, now=NOW).source == Source.RAW


def test_an_hour_older_than_the_minute_rollups_reads_the_hour_rollups() -> None:
    hour = TimeRange(NOW - timedelta(days=401), NOW - timedelta(days=401) + timedelta(hours=1))
    plan = plan_for(hour, now=NOW)
    assert plan.source == Source.ROLLUP_1H
    assert plan.window_seconds == 3600


def test_the_span_still_wins_when_it_asks_for_a_coarser_source() -> None:
    # 60 days ending 40 days ago: the span alone already calls for the hour rollups.
    old = TimeRange(NOW - timedelta(days=100), NOW - timedelta(days=40))
    assert plan_for(old, now=NOW).source == Source.ROLLUP_1H


def test_retention_edges() -> None:
    edge = NOW - timedelta(days=30)
    assert source_for(TimeRange(edge, edge + timedelta(hours=1)), NOW) == Source.RAW
    early = edge - timedelta(seconds=1)
    assert source_for(TimeRange(early, early + timedelta(hours=1)), NOW) == Source.ROLLUP_1M


def test_a_custom_range_in_the_past_without_now_is_judged_from_its_end() -> None:
    # The documented default: `now` is the range's end (what presets need).
    day = TimeRange(NOW - timedelta(days=40), NOW - timedelta(days=39))
    assert plan_for(day).source == Source.RAW
