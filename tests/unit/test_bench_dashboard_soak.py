"""The dashboard soak's trend arithmetic: what "grows per hour" means in its report."""

from __future__ import annotations

import pytest

from bench.dashboard_soak import series_summary, slope_per_hour


def test_a_steady_climb_is_reported_per_hour() -> None:
    # 1 MB a minute for ten minutes
    points = [(60.0 * m, 200.0 + m) for m in range(11)]
    assert slope_per_hour(points) == pytest.approx(60.0)


def test_a_flat_series_has_no_slope_and_too_few_points_have_none() -> None:
    assert slope_per_hour([(0.0, 5.0), (10.0, 5.0), (20.0, 5.0)]) == pytest.approx(0.0)
    assert slope_per_hour([(0.0, 5.0), (10.0, 6.0)]) is None


def test_the_warm_up_is_left_out_of_the_settled_slope() -> None:
    # a jump while the caches fill, then flat
    points = [(0.0, 100.0), (10.0, 200.0), *[(float(t), 200.0) for t in range(20, 101, 10)]]
    summary = series_summary(points)
    assert summary["start"] == 100.0 and summary["peak"] == 200.0 and summary["end"] == 200.0
    assert summary["slope_per_hour"] > 0
    assert summary["slope_per_hour_after_warm_up"] == pytest.approx(0.0)
