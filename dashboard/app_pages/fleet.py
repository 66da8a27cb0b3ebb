"""Fleet overview page: health counts, open alerts, sites (table and map), devices.

Retired devices are left out of everything here unless "Show retired devices" is on.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from dashboard import charts, data, rules_data, ui
from edgewatch.alerts import AlertState
from edgewatch.models import SEVERITIES

settings, connection, user = ui.context()
st.title("Fleet overview")


# Health moves on its own (a device goes STALE by staying silent), so the overview refreshes
# itself at the data cache's pace, without reloading the page.
@st.fragment(run_every=settings.dashboard_refresh_seconds)
def overview() -> None:  # noqa: PLR0915 - the page, top to bottom
    ui.end_with_session(settings)
    view, fleet = ui.load_or_stop(data.load_fleet_with_frame, connection)
    now = pd.Timestamp(view.now_ns, unit="ns", tz="UTC")
    ui.ingest_banner(view)

    labels = ui.device_labels(connection, view)
    group = ui.matching_keys(labels, ui.label_filter(labels, key="fleet_labels"))
    every_device = ui.keep_devices(fleet, group)
    retired = every_device["retired"].astype(bool)
    show_retired = st.session_state.get("fleet_show_retired", False)
    devices = every_device if show_retired else every_device[~retired].reset_index(drop=True)
    sites = data.site_frame(devices)
    devices = rules_data.with_maintenance(
        devices, ui.load(rules_data.load_silences, connection) or [], time.time_ns(), labels
    )
    loaded = ui.load(data.load_alerts, connection, settings.alert_lookback_days)
    open_alerts = pd.DataFrame()
    if loaded is not None:
        alerts_now_ns, records = loaded
        frame = data.alerts_frame(records, alerts_now_ns)
        open_alerts = ui.keep_devices(frame[frame["state"] != AlertState.RESOLVED], group)

    if devices.empty:
        st.info(
            "No device has reported yet. Devices appear here with their first status or telemetry "
            "message; try the simulator: `edgewatch simulate`.",
            icon=":material/hourglass_empty:",
        )

    device_counts = {str(k): int(v) for k, v in devices["state"].value_counts().items()}
    severity_counts: dict[str, int] = {}
    if not open_alerts.empty:
        severity_counts = {
            str(k): int(v) for k, v in open_alerts["severity"].value_counts().items()
        }

    st.subheader("Health")
    cols = st.columns(6)
    cols[0].metric("Sites", len(sites), border=True)
    cols[1].metric("Devices", len(devices), border=True)
    for col, state in zip(cols[2:], charts.HEALTH_ORDER, strict=True):
        col.metric(str(state).title(), int(device_counts.get(state, 0)), border=True)

    st.subheader("Open alerts")
    sev_cols = st.columns(len(SEVERITIES) + 1)
    sev_cols[0].metric("Open", len(open_alerts), border=True)
    for col, severity in zip(sev_cols[1:], SEVERITIES, strict=True):
        col.metric(severity.title(), int(severity_counts.get(severity, 0)), border=True)

    left, right = st.columns(2)
    with left:
        st.plotly_chart(
            charts.health_counts_figure(device_counts, title="Devices by health"),
            key="fleet_dev_fig",
        )
    with right:
        st.plotly_chart(
            charts.severity_figure(severity_counts, title="Open alerts by severity"),
            key="fleet_sev_fig",
        )

    st.subheader("Sites")
    site_filter = st.multiselect(
        "Sites", options=list(sites["site"]), key="fleet_sites", placeholder="All sites"
    )
    shown_sites = sites[sites["site"].isin(site_filter)] if site_filter else sites
    site_col, map_col = st.columns([3, 2])
    with site_col:
        st.dataframe(
            ui.styled(shown_sites.drop(columns=["lat", "lon"]), state="state"),
            hide_index=True,
            key="fleet_site_table",
            column_config={"state": st.column_config.TextColumn("worst state")},
        )
    with map_col:
        located = shown_sites.dropna(subset=["lat", "lon"])
        if located.empty:
            st.caption("No site has coordinates yet (devices send `lat`/`lon` in their status).")
        else:
            st.plotly_chart(charts.site_map_figure(located), key="fleet_map")

    st.subheader("Devices")
    st.toggle(
        f"Show retired devices ({int(retired.sum())})",
        key="fleet_show_retired",
        help="Devices an operator retired on their Device page and that have not reported since.",
    )
    state_filter = st.multiselect(
        "Health", options=list(charts.HEALTH_ORDER), key="fleet_states", placeholder="All states"
    )
    shown = devices
    if site_filter:
        shown = shown[shown["site"].isin(site_filter)]
    if state_filter:
        shown = shown[shown["state"].isin(state_filter)]
    columns = ["site", "device", "state", "reason", "since", "last_seen", "model", "firmware"]
    table = shown[[*columns, "retired"]] if show_retired else shown[columns]
    table = table.assign(last_seen_ago=[ui.ago(t, now) for t in table["last_seen"]])
    badges, state_config = ui.state_badges(table)
    selection = st.dataframe(
        badges,
        hide_index=True,
        key="fleet_devices",
        on_select="rerun",
        selection_mode="single-row",
        column_config={
            **ui.column_config(table),
            "state": state_config,
            "last_seen_ago": st.column_config.TextColumn("silent for"),
        },
    )
    st.caption("Select a row to open the device.")
    rows = selection.selection.rows if selection is not None else []
    if rows:
        picked = table.iloc[rows[0]]
        st.switch_page(
            ui.PAGE_DEVICE,
            query_params={"site": str(picked["site"]), "device": str(picked["device"])},
        )


overview()
