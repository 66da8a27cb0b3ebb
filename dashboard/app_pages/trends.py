"""Trends page: one metric of several devices over a range, with min/max band and gaps.

The view lives in the query string (`?devices=site/dev,...&metric=...&range=7d` or
`&range=custom&start=...&stop=...`), so a copied link reopens it. With no devices named it
opens on the devices with open alerts and the metric they are about, for 24 h (`focus`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pandas as pd
import streamlit as st

from dashboard import charts, data, focus, ui
from dashboard.ranges import (
    CUSTOM,
    DEFAULT_PRESET,
    PRESETS,
    TimeRange,
    custom_range,
    max_windows,
    parse_iso,
    plan_for,
    preset_range,
)
from edgewatch.alerts import AlertRecord
from edgewatch.contract import is_valid_name
from edgewatch.labels import selector_text

RANGE_KEYS = {label.replace(" ", ""): label for label in PRESETS}  # "24h" -> "24 h"

settings, connection, user = ui.context()
st.title("Trends")

view = ui.load_or_stop(data.load_fleet, connection)
known = sorted(f"{h.site}/{h.device}" for h in view.health)


def keys_from(text: str) -> list[str]:
    """Devices named in the query string, allow-listed by the contract's name pattern."""
    out = []
    for item in text.split(","):
        site, _, device = item.strip().partition("/")
        if is_valid_name(site) and is_valid_name(device):
            out.append(f"{site}/{device}")
    return out


def open_alerts() -> list[AlertRecord]:
    loaded = ui.load(data.load_alerts, connection, settings.alert_lookback_days)
    return [r for r in loaded[1] if r.is_open] if loaded is not None else []


def default_devices() -> list[str]:
    known_keys = [(h.site, h.device) for h in view.health]
    return [f"{s}/{d}" for s, d in focus.trend_devices(known_keys, open_alerts())]


def default_metric(keys: tuple[tuple[str, str], ...], metrics: list[str]) -> str | None:
    recent = ui.load(data.load_recent_metrics, connection, *keys[0])
    numeric = (
        [
            str(m)
            for m, v in zip(recent["metric"], recent["value"], strict=True)
            if not isinstance(v, bool)
        ]
        if recent is not None
        else []
    )
    return focus.trend_metric(keys, open_alerts(), metrics, numeric)


if "trends_init" not in st.session_state:
    # First run of this session: the query string, if any, sets the view.
    st.session_state["trends_init"] = True
    wanted = keys_from(st.query_params.get("devices", ""))
    if not wanted:
        # No devices named: open on those with open alerts, and their metric.
        st.session_state["trends_focus"] = True
        wanted = default_devices()
    st.session_state["trends_extra"] = [k for k in wanted if k not in known]
    st.session_state["trends_devices"] = wanted
    st.session_state["trends_sites"] = sorted({k.split("/", 1)[0] for k in wanted})
    st.session_state["trends_metric_wanted"] = st.query_params.get("metric", "")
    range_key = st.query_params.get("range", "")
    st.session_state["trends_range"] = (
        CUSTOM if range_key == CUSTOM else RANGE_KEYS.get(range_key, DEFAULT_PRESET)
    )
    try:
        start_q = parse_iso(st.query_params.get("start", ""))
        stop_q = parse_iso(st.query_params.get("stop", ""))
        st.session_state["trends_custom"] = (start_q.date(), stop_q.date())
    except ValueError:
        pass

options = sorted(set(known) | set(st.session_state.get("trends_extra", [])))
if not options:
    st.info("No device has reported yet: there is nothing to chart.")
    st.stop()

c0, c1, c2 = st.columns([1, 1, 2])
labels = ui.device_labels(connection, view)
label_selector = ui.label_filter(labels, key="trends_labels", container=c0)
group = ui.matching_keys(labels, label_selector)
if group is not None:
    options = [k for k in options if tuple(k.split("/", 1)) in group]
site_options = sorted({k.split("/", 1)[0] for k in options})
st.session_state["trends_sites"] = [
    s for s in st.session_state.get("trends_sites", []) if s in site_options
]
sites = c1.multiselect("Sites", site_options, key="trends_sites", placeholder="All sites")
device_options = [k for k in options if not sites or k.split("/", 1)[0] in sites]
st.session_state["trends_devices"] = [
    k for k in st.session_state.get("trends_devices", []) if k in device_options
]
chosen = c2.multiselect(
    "Devices (overlay to compare)",
    device_options,
    key="trends_devices",
    max_selections=20,
    placeholder="Choose one or more devices",
)
if not chosen:
    st.info(
        "Choose one or more devices to chart."
        + (" No device carries every chosen label." if not options else "")
    )
    st.stop()
keys = tuple((k.split("/", 1)[0], k.split("/", 1)[1]) for k in chosen)

metrics = ui.load_or_stop(data.load_metric_names, connection, keys)
if not metrics:
    st.info("These devices have no telemetry stored yet.")
    st.stop()
wanted_metric = st.session_state.pop("trends_metric_wanted", "")
if not wanted_metric and st.session_state.pop("trends_focus", False):
    wanted_metric = default_metric(keys, metrics) or ""
if wanted_metric in metrics:
    st.session_state["trends_metric"] = wanted_metric
elif st.session_state.get("trends_metric") not in metrics:
    st.session_state["trends_metric"] = metrics[0]

m1, m2, m3 = st.columns([2, 1, 2])
metric = m1.selectbox("Metric", metrics, key="trends_metric")
range_label = m2.selectbox("Range", [*PRESETS, CUSTOM], key="trends_range")
now = datetime.now(UTC)
time_range: TimeRange
if range_label == CUSTOM:
    today = now.date()
    # Defaults through the session state only: passing `value=` as well makes Streamlit warn.
    st.session_state.setdefault("trends_custom", (today - timedelta(days=7), today))
    picked = m3.date_input("From - to (UTC, whole days)", max_value=today, key="trends_custom")
    if not isinstance(picked, tuple) or len(picked) != 2:
        st.info("Pick the first and the last day of the range.")
        st.stop()
    first, last = picked
    assert isinstance(first, date) and isinstance(last, date)
    try:
        time_range = custom_range(
            datetime.combine(first, time(), UTC),
            datetime.combine(last + timedelta(days=1), time(), UTC),
            now,
        )
    except ValueError as exc:
        st.warning(f"That range cannot be shown: {exc}.")
        st.stop()
else:
    time_range = preset_range(range_label or DEFAULT_PRESET, now)

# The view goes into the query string so that a copied link reopens it.
params = {"devices": ",".join(chosen), "metric": metric or ""}
if range_label == CUSTOM:
    params.update(
        range=CUSTOM, start=time_range.start.isoformat(), stop=time_range.stop.isoformat()
    )
else:
    params["range"] = (range_label or DEFAULT_PRESET).replace(" ", "")
if label_selector:
    params[ui.LABELS_PARAM] = selector_text(label_selector)
st.query_params.from_dict(params)

plan = plan_for(time_range, now=now)
series = ui.load_or_stop(data.load_series, connection, keys, metric or "", time_range, plan)
figure = charts.trend_figure(series, metric=metric or "", max_gap_s=plan.gap_seconds)
alerts_loaded = ui.load(data.load_alerts, connection, settings.alert_lookback_days)
marks = charts.alert_marks_frame(
    alerts_loaded[1] if alerts_loaded is not None else [],
    start=pd.Timestamp(time_range.start),
    stop=pd.Timestamp(time_range.stop),
    devices=keys,
)
figure = charts.add_alert_marks(figure, marks)
st.plotly_chart(figure, key="trends_fig")
st.caption(
    f"{plan.label}: at most {max_windows(time_range, plan)} points per device. The band is the "
    "min/max within each window; gaps are periods without data. Triangles mark alerts "
    "raised, crosses alerts cleared (hover for the alert)."
)
if series.empty:
    st.info("No data for this metric in this range.")
else:
    st.download_button(
        "Download CSV",
        data=series.to_csv(index=False).encode("utf-8"),
        file_name=f"edgewatch-{metric}-{time_range.start:%Y%m%dT%H%M}-{time_range.stop:%Y%m%dT%H%M}.csv",
        mime="text/csv",
        key="trends_csv",
        on_click="ignore",
        icon=":material/download:",
    )
