"""dashboard room: pure Plotly figure builders and the colours the whole dashboard uses.

Frames in, figures out: no Streamlit, no InfluxDB, no clock. That keeps what operators see
(gaps left open, min/max bands, one colour per health state) unit-testable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

from edgewatch.alerts import AlertRecord
from edgewatch.health import HealthState
from edgewatch.models import SEVERITIES

HEALTH_COLORS: dict[str, str] = {
    HealthState.ONLINE: "#2e9e5b",
    HealthState.STALE: "#e0a000",
    HealthState.OFFLINE: "#d64545",
    HealthState.UNKNOWN: "#8c8c8c",
}
HEALTH_ORDER: tuple[str, ...] = (
    HealthState.ONLINE,
    HealthState.STALE,
    HealthState.OFFLINE,
    HealthState.UNKNOWN,
)
SEVERITY_COLORS: dict[str, str] = {
    "critical": "#b71c1c",
    "major": "#e65100",
    "minor": "#f9a825",
    "warning": "#fdd835",
    "info": "#1e88e5",
}
# Series colours for overlaid devices: distinct from the health reds and greens.
SERIES_COLORS: tuple[str, ...] = (
    "#1f77b4", "#9467bd", "#17becf", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#393b79", "#637939", "#843c39",
)  # fmt: skip
# A gap is also anything longer than this many times the series' usual spacing, so a device
# reporting every 10 s inside 5 s windows is not drawn as a dotted line.
GAP_MEDIAN_FACTOR = 3.0

_LAYOUT: dict[str, object] = {
    "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
    # Below the plot: above it the legend collides with the title.
    "legend": {"orientation": "h", "yanchor": "top", "y": -0.15, "x": 0},
    "hovermode": "x unified",
}


def _rgba(hex_color: str, alpha: float) -> str:
    red, green, blue = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def insert_gaps(
    frame: pd.DataFrame, *, time_column: str, value_columns: Sequence[str], max_gap_s: float
) -> pd.DataFrame:
    """The frame sorted by time, with a row of None wherever two points are too far apart.

    Plotly with connectgaps=False breaks the line at a None, so a silent device shows as a
    hole instead of a straight line across the hours it said nothing.
    """
    if frame.empty:
        return frame.copy()
    ordered = frame.sort_values(time_column).reset_index(drop=True)
    times = pd.to_datetime(ordered[time_column], utc=True)
    spacing_s = times.diff().dt.total_seconds()
    typical = spacing_s.median()
    threshold = max_gap_s
    if pd.notna(typical):
        threshold = max(threshold, GAP_MEDIAN_FACTOR * float(typical))
    gap_after = spacing_s[spacing_s > threshold].index
    if len(gap_after) == 0:
        return ordered
    rows: list[dict[str, object]] = []
    records: list[dict[str, object]] = [
        {str(k): v for k, v in r.items()} for r in ordered.to_dict("records")
    ]
    gap_set = {int(i) for i in gap_after}
    for position, record in enumerate(records):
        if position in gap_set:
            previous = times.iloc[position - 1]
            filler: dict[str, object] = dict(record)
            filler[time_column] = previous + (times.iloc[position] - previous) / 2
            for column in value_columns:
                filler[column] = None
            rows.append(filler)
        rows.append(record)
    result = pd.DataFrame(rows, columns=ordered.columns)
    for column in value_columns:
        result[column] = result[column].astype(object).where(result[column].notna(), None)
    return result


def trend_figure(
    series: pd.DataFrame, *, metric: str, max_gap_s: float, title: str | None = None
) -> go.Figure:
    """Mean lines with a min/max band per device; gaps stay gaps.

    `series` has columns time, site, device, mean, min, max (min/max may be NaN for raw
    windows that held a single reading: the band then just collapses onto the line).
    """
    figure = go.Figure()
    if series.empty:
        figure.update_layout(title=title or metric, **_LAYOUT)
        return figure
    keys = series[["site", "device"]].drop_duplicates().itertuples(index=False)
    for index, (site, device) in enumerate(keys):
        color = SERIES_COLORS[index % len(SERIES_COLORS)]
        part = series[(series["site"] == site) & (series["device"] == device)]
        gapped = insert_gaps(
            part, time_column="time", value_columns=("mean", "min", "max"), max_gap_s=max_gap_s
        )
        name = f"{site}/{device}"
        x = list(gapped["time"])
        # The band: max first, then min filled up to it. Both legend-less and hover-less so
        # the unified hover shows one line per device.
        figure.add_trace(
            go.Scatter(
                x=x,
                y=_values(gapped["max"]),
                mode="lines",
                line={"width": 0},
                connectgaps=False,
                showlegend=False,
                hoverinfo="skip",
                name=f"{name} max",
                legendgroup=name,
            )
        )
        figure.add_trace(
            go.Scatter(
                x=x,
                y=_values(gapped["min"]),
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor=_rgba(color, 0.18),
                connectgaps=False,
                showlegend=False,
                hoverinfo="skip",
                name=f"{name} min",
                legendgroup=name,
            )
        )
        figure.add_trace(
            go.Scatter(
                x=x,
                y=_values(gapped["mean"]),
                mode="lines",
                line={"width": 2, "color": color},
                connectgaps=False,
                name=name,
                legendgroup=name,
            )
        )
    figure.update_layout(title=title or metric, yaxis_title=metric, **_LAYOUT)
    return figure


ALERT_MARK_COLUMNS = ["time", "site", "device", "type", "severity", "state", "message"]
# Where the marks sit on their own 0..1 axis over the plot: raises on top, clears just below.
ALERT_MARK_Y = {"raised": 0.98, "cleared": 0.92}


def alert_marks_frame(
    records: Sequence[AlertRecord],
    *,
    start: pd.Timestamp,
    stop: pd.Timestamp,
    devices: Sequence[tuple[str, str]] | None = None,
) -> pd.DataFrame:
    """One row per alert raise and per clear (by the device or an operator's resolve) that
    falls in [start, stop], for the given devices (all when None)."""
    wanted = None if devices is None else set(devices)
    rows = []
    for record in records:
        if wanted is not None and (record.site, record.device) not in wanted:
            continue
        marks = [(record.opened_ns, "raised")]
        if record.closed_ns is not None:
            marks.append((record.closed_ns, "cleared"))
        for ts_ns, state in marks:
            time = pd.Timestamp(ts_ns, unit="ns", tz="UTC")
            if start <= time <= stop:
                closer = (
                    f" by {record.closed_by}" if state == "cleared" and record.closed_by else ""
                )
                rows.append(
                    {
                        "time": time,
                        "site": record.site,
                        "device": record.device,
                        "type": record.type,
                        "severity": record.severity,
                        "state": state + closer,
                        "message": record.message,
                    }
                )
    return pd.DataFrame(rows, columns=ALERT_MARK_COLUMNS).sort_values("time", ignore_index=True)


def add_alert_marks(figure: go.Figure, marks: pd.DataFrame) -> go.Figure:
    """Alert raises (triangles in the severity colour) and clears (crosses) along the top of
    a time chart, with a thin line down through the plot; hovering a mark shows the alert."""
    if marks.empty:
        return figure
    for state, symbol in (("raised", "triangle-down"), ("cleared", "x-thin-open")):
        part = marks[marks["state"].str.startswith(state)]
        if part.empty:
            continue
        figure.add_trace(
            go.Scatter(
                x=list(part["time"]),
                y=[ALERT_MARK_Y[state]] * len(part),
                yaxis="y2",
                mode="markers",
                name=f"alert {state}",
                marker={
                    "symbol": symbol,
                    "size": 12,
                    "color": [SEVERITY_COLORS.get(v, "#555555") for v in part["severity"]],
                    "line": {"width": 2, "color": "#333333"},
                },
                customdata=part[["site", "device", "type", "severity", "state", "message"]]
                .astype(str)
                .values.tolist(),
                hovertemplate=(
                    "alert %{customdata[2]} (%{customdata[3]}) on %{customdata[0]}/"
                    "%{customdata[1]}: %{customdata[4]}<br>%{customdata[5]}<extra></extra>"
                ),
            )
        )
    for time, severity in zip(marks["time"], marks["severity"], strict=True):
        figure.add_vline(
            x=time, line={"width": 1, "dash": "dot", "color": SEVERITY_COLORS.get(severity, "#555")}
        )
    figure.update_layout(
        yaxis2={"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True}
    )
    return figure


def _values(column: pd.Series) -> list[float | None]:
    return [None if pd.isna(v) else float(v) for v in column]


def health_counts_figure(counts: Mapping[str, int], *, title: str) -> go.Figure:
    """A horizontal bar of devices (or sites) per health state, in the health colours."""
    states = [s for s in HEALTH_ORDER if counts.get(s, 0) or s != HealthState.UNKNOWN]
    figure = go.Figure(
        go.Bar(
            x=[counts.get(s, 0) for s in states],
            y=list(states),
            orientation="h",
            marker_color=[HEALTH_COLORS[s] for s in states],
            text=[counts.get(s, 0) for s in states],
            textposition="auto",
        )
    )
    figure.update_layout(
        title=title,
        height=220,
        yaxis={"autorange": "reversed"},
        **{**_LAYOUT, "hovermode": "closest"},
    )
    return figure


def severity_figure(counts: Mapping[str, int], *, title: str) -> go.Figure:
    """Open alerts per severity, most severe first, in the severity colours."""
    figure = go.Figure(
        go.Bar(
            x=list(SEVERITIES),
            y=[counts.get(s, 0) for s in SEVERITIES],
            marker_color=[SEVERITY_COLORS[s] for s in SEVERITIES],
            text=[counts.get(s, 0) for s in SEVERITIES],
            textposition="auto",
        )
    )
    figure.update_layout(title=title, height=220, **{**_LAYOUT, "hovermode": "closest"})
    return figure


def site_map_figure(sites: pd.DataFrame) -> go.Figure:
    """Sites placed by longitude and latitude, coloured by their rolled-up health.

    Drawn on plain axes (equirectangular, corrected for latitude) instead of map tiles or
    Plotly's geo basemap: both are fetched from the internet, which not every network this
    runs on reaches, and a map that fails to draw is worse than one without coastlines.
    `sites` has columns site, lat, lon, state, devices.
    """
    figure = go.Figure()
    for state in HEALTH_ORDER:
        part = sites[sites["state"] == state]
        if part.empty:
            continue
        figure.add_trace(
            go.Scatter(
                x=list(part["lon"]),
                y=list(part["lat"]),
                text=list(part["site"]),
                customdata=list(part["devices"]),
                mode="markers+text",
                textposition="top center",
                marker={"size": 16, "color": HEALTH_COLORS[state], "line": {"width": 1}},
                name=str(state),
                hovertemplate="%{text}: %{customdata} device(s)<br>%{y:.3f}, %{x:.3f}",
            )
        )
    lat = pd.to_numeric(sites["lat"], errors="coerce")
    lon = pd.to_numeric(sites["lon"], errors="coerce")
    mid_lat = float(lat.mean()) if lat.notna().any() else 0.0
    # At least a degree of padding, so a single site is not drawn on a zero-size axis.
    pad_lat = max(1.0, float(lat.max() - lat.min()) * 0.25) if lat.notna().any() else 1.0
    pad_lon = max(1.0, float(lon.max() - lon.min()) * 0.25) if lon.notna().any() else 1.0
    figure.update_xaxes(
        title="longitude", range=[float(lon.min()) - pad_lon, float(lon.max()) + pad_lon]
    )
    figure.update_yaxes(
        title="latitude",
        range=[float(lat.min()) - pad_lat, float(lat.max()) + pad_lat],
        scaleanchor="x",
        scaleratio=1 / max(0.1, math.cos(math.radians(mid_lat))),
    )
    figure.update_layout(
        title="Sites by location", height=360, **{**_LAYOUT, "hovermode": "closest"}
    )
    return figure


def bar_figure(labels: Sequence[str], values: Sequence[float], *, title: str) -> go.Figure:
    """A plain horizontal bar chart, largest first (noisiest alert types, rejects by reason)."""
    figure = go.Figure(
        go.Bar(x=list(values), y=list(labels), orientation="h", marker_color="#5470c6")
    )
    figure.update_layout(
        title=title,
        height=max(200, 40 + 28 * len(labels)),
        yaxis={"autorange": "reversed"},
        **{**_LAYOUT, "hovermode": "closest"},
    )
    return figure


def lines_figure(
    frame: pd.DataFrame, *, columns: Sequence[str], title: str, yaxis_title: str
) -> go.Figure:
    """Several columns of one frame over its `time` column (ingest rates, latency, lag)."""
    figure = go.Figure()
    for index, column in enumerate(columns):
        if column not in frame:
            continue
        figure.add_trace(
            go.Scatter(
                x=list(frame["time"]),
                y=_values(frame[column]),
                mode="lines",
                name=column,
                connectgaps=False,
                line={"color": SERIES_COLORS[index % len(SERIES_COLORS)]},
            )
        )
    figure.update_layout(title=title, yaxis_title=yaxis_title, height=300, **_LAYOUT)
    return figure


def status_timeline_figure(history: pd.DataFrame, *, stop: pd.Timestamp) -> go.Figure:
    """Online/offline periods of one device as coloured spans (`time`, `state`, `reason`)."""
    figure = go.Figure()
    if history.empty:
        figure.update_layout(height=160, **_LAYOUT)
        return figure
    ordered = history.sort_values("time").reset_index(drop=True)
    ends = [*list(ordered["time"].iloc[1:]), stop]
    for state, color in (
        ("online", HEALTH_COLORS["ONLINE"]),
        ("offline", HEALTH_COLORS["OFFLINE"]),
    ):
        rows = ordered[ordered["state"] == state]
        if rows.empty:
            continue
        figure.add_trace(
            go.Bar(
                base=list(rows["time"]),
                x=[(ends[i] - ordered["time"].iloc[i]).total_seconds() * 1000 for i in rows.index],
                y=["status"] * len(rows),
                orientation="h",
                marker_color=color,
                name=state,
                hovertext=[str(r) for r in rows["reason"]],
            )
        )
    figure.update_layout(barmode="overlay", height=160, xaxis={"type": "date"}, **_LAYOUT)
    return figure
