"""Figure builders: gaps stay gaps, the min/max band is there, colours follow the state."""

from __future__ import annotations

import pandas as pd

from dashboard.charts import HEALTH_COLORS, insert_gaps, site_map_figure, trend_figure


def _series(times: list[str], device: str = "cam-1") -> pd.DataFrame:
    n = len(times)
    return pd.DataFrame(
        {
            "time": pd.to_datetime(times, utc=True),
            "site": ["s1"] * n,
            "device": [device] * n,
            "mean": [10.0 + i for i in range(n)],
            "min": [9.0 + i for i in range(n)],
            "max": [12.0 + i for i in range(n)],
        }
    )


MINUTES = ["2026-01-01T00:00Z", "2026-01-01T00:01Z", "2026-01-01T00:02Z"]
AFTER_GAP = ["2026-01-01T01:00Z", "2026-01-01T01:01Z"]


def test_a_silence_longer_than_two_windows_becomes_a_none() -> None:
    frame = _series(MINUTES + AFTER_GAP)
    gapped = insert_gaps(frame, time_column="time", value_columns=("mean",), max_gap_s=120)
    assert len(gapped) == 6
    assert gapped["mean"].iloc[3] is None
    assert gapped["time"].iloc[2] < gapped["time"].iloc[3] < gapped["time"].iloc[4]


def test_regular_spacing_is_not_a_gap() -> None:
    frame = _series(MINUTES)
    gapped = insert_gaps(frame, time_column="time", value_columns=("mean",), max_gap_s=120)
    assert len(gapped) == 3
    assert None not in list(gapped["mean"])


def test_a_device_slower_than_the_window_is_not_drawn_dotted() -> None:
    # Readings every 60 s in 5 s windows: the usual spacing decides, not the window.
    frame = _series(MINUTES)
    gapped = insert_gaps(frame, time_column="time", value_columns=("mean",), max_gap_s=10)
    assert len(gapped) == 3


def test_trend_figure_has_band_and_line_per_device_and_never_bridges_gaps() -> None:
    frame = pd.concat([_series(MINUTES + AFTER_GAP, "cam-1"), _series(MINUTES, "cam-2")])
    figure = trend_figure(frame, metric="cpu_temp_c", max_gap_s=120)
    assert len(figure.data) == 6  # max, min (filled to max), mean for each device
    upper, lower, mean = figure.data[0], figure.data[1], figure.data[2]
    assert lower.fill == "tonexty"
    assert list(upper.y)[3] is None and list(lower.y)[3] is None and list(mean.y)[3] is None
    assert all(trace.connectgaps is False for trace in figure.data)
    assert mean.name == "s1/cam-1"
    assert upper.y[0] == 12.0 and lower.y[0] == 9.0


def test_empty_series_gives_an_empty_figure() -> None:
    figure = trend_figure(_series([]), metric="x", max_gap_s=60)
    assert len(figure.data) == 0


def test_site_map_colours_sites_by_their_state() -> None:
    sites = pd.DataFrame(
        {
            "site": ["a", "b"],
            "lat": [48.1, 52.5],
            "lon": [11.6, 13.4],
            "state": ["ONLINE", "OFFLINE"],
            "devices": [2, 3],
        }
    )
    figure = site_map_figure(sites)
    colors = {trace.name: trace.marker.color for trace in figure.data}
    assert colors == {"ONLINE": HEALTH_COLORS["ONLINE"], "OFFLINE": HEALTH_COLORS["OFFLINE"]}
