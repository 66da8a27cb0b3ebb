"""Figure builders: gaps stay gaps, the min/max band is there, colours follow the state."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from dashboard import charts
from dashboard.charts import HEALTH_COLORS, insert_gaps, site_map_figure, trend_figure
from edgewatch.alerts import AlertRecord


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


def _alert(site: str, device: str, opened_ns: int, closed_ns: int | None = None) -> AlertRecord:
    return AlertRecord(
        alert_id=f"{site}/{device}/overheat/{opened_ns}",
        site=site,
        device=device,
        type="overheat",
        severity="critical",
        opened_ns=opened_ns,
        last_ns=opened_ns,
        count=2,
        message="cpu at 93 C",
        last_value=93.0,
        closed_ns=closed_ns,
        closed_by="ana" if closed_ns else None,
    )


def test_a_trend_chart_marks_alert_raises_and_clears_with_the_alert_on_hover() -> None:
    base = pd.Timestamp("2026-01-01T00:00:00Z")
    ns = base.value
    series = pd.DataFrame(
        {
            "time": [base + pd.Timedelta(minutes=m) for m in range(60)],
            "site": "s1",
            "device": "d1",
            "mean": [50.0 + m for m in range(60)],
            "min": [49.0 + m for m in range(60)],
            "max": [51.0 + m for m in range(60)],
        }
    )
    records = [
        _alert("s1", "d1", ns + 10 * 60 * 10**9, ns + 40 * 60 * 10**9),
        _alert("s1", "other", ns + 20 * 60 * 10**9),  # another device: not on this chart
        _alert("s1", "d1", ns - 3600 * 10**9),  # before the range
    ]
    marks = charts.alert_marks_frame(
        records, start=base, stop=base + pd.Timedelta(hours=1), devices=[("s1", "d1")]
    )
    figure = charts.add_alert_marks(
        charts.trend_figure(series, metric="cpu_temp_c", max_gap_s=120), marks
    )
    by_name = {trace.name: trace for trace in figure.data}
    raised, cleared = by_name["alert raised"], by_name["alert cleared"]
    assert list(raised.x) == [base + pd.Timedelta(minutes=10)]
    assert list(cleared.x) == [base + pd.Timedelta(minutes=40)]
    assert raised.yaxis == "y2" and raised.marker.color[0] == charts.SEVERITY_COLORS["critical"]
    assert list(raised.customdata[0]) == [
        "s1", "d1", "overheat", "critical", "raised", "cpu at 93 C"
    ]  # fmt: skip
    assert cleared.customdata[0][4] == "cleared by ana"
    assert "customdata[5]" in raised.hovertemplate
    assert len(figure.layout.shapes) == 2  # a line through the plot at each mark


def test_no_alerts_leave_the_chart_as_it_was() -> None:
    figure = charts.add_alert_marks(
        go.Figure(),
        charts.alert_marks_frame(
            [], start=pd.Timestamp("2026-01-01T00:00Z"), stop=pd.Timestamp("2026-01-02T00:00Z")
        ),
    )
    assert len(figure.data) == 0
