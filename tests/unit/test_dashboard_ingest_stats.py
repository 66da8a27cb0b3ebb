"""The ingest-stats helpers of the dashboard: shared windows, per-instance tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from dashboard.frames import counter_rates, ingest_instances, ingest_stats_window, per_instance
from dashboard.ranges import TimeRange

STOP = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_window_holds_two_reports_and_bounds_the_rows() -> None:
    hour = TimeRange(STOP - timedelta(hours=1), STOP)
    week = TimeRange(STOP - timedelta(days=7), STOP)
    assert ingest_stats_window(hour, 5.0) == timedelta(seconds=10)
    assert ingest_stats_window(week, 5.0) == timedelta(seconds=1680)


def test_instances_show_their_newest_report_and_rates_sum_on_shared_times() -> None:
    times = pd.to_datetime(
        [STOP, STOP, STOP + timedelta(seconds=10), STOP + timedelta(seconds=10)], utc=True
    )
    stats = pd.DataFrame(
        {
            "time": times,
            "instance": ["a", "b", "a", "b"],
            "received": [0, 0, 100, 300],
            "queue_depth": [1, 2, 3, 4],
            "journal_fill": [0.1, 0.2, 0.3, 0.4],
        }
    )
    assert list(counter_rates(stats, ("received",))["received"]) == [40.0]
    wide = per_instance(stats, "queue_depth")
    assert list(wide.columns) == ["time", "a", "b"]
    assert list(wide["a"]) == [1, 3]
    table = ingest_instances(stats)
    assert list(table["instance"]) == ["a", "b"]
    assert list(table["queue_depth"]) == [3, 4]
    assert list(table["journal_fill"]) == [0.3, 0.4]
    assert table["lag_ms"].isna().all()
