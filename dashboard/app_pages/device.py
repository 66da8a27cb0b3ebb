"""Device detail page: state and reason, what it runs, recent metrics, alerts, online history,
and retiring it (operators only): a recorded, reversible action that takes a device that is
gone for good off the fleet overview.

The device comes from the query string (`?site=...&device=...`), so a link opens it; with
none named, the page opens on the device most in need (`focus.device_most_in_need`).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from dashboard import charts, data, focus, ui
from dashboard.ranges import PRESETS, plan_for, preset_range
from edgewatch.contract import is_valid_name
from edgewatch.health import DEVICE_ACTION_REINSTATE, DEVICE_ACTION_RETIRE

settings, connection, user = ui.context()
st.title("Device")

flash = st.session_state.pop("device_flash", None)
if flash:
    st.success(flash, icon=":material/check_circle:")

view, devices = ui.load_or_stop(data.load_fleet_with_frame, connection)
ui.ingest_banner(view)

site = st.query_params.get("site", "")
device = st.query_params.get("device", "")
labels = ui.device_labels(connection, view)
group = ui.matching_keys(labels, ui.label_filter(labels, key="device_labels"))
known = [f"{s}/{d}" for s, d in zip(devices["site"], devices["device"], strict=True)]
if not known:
    st.info("No device has reported yet, so there is nothing to show here.")
    st.stop()
alerts_loaded = ui.load(data.load_alerts, connection, settings.alert_lookback_days)
if not (is_valid_name(site) and is_valid_name(device)):
    # No device named: open on the one most in need, and say so in the URL.
    records = alerts_loaded[1] if alerts_loaded is not None else []
    picked = focus.device_most_in_need(view.health, [r for r in records if r.is_open])
    if picked is None:
        st.stop()
    site, device = picked
    st.query_params.update({"site": site, "device": device})


def _open_picked() -> None:
    picked_site, _, picked_device = str(st.session_state["device_pick"]).partition("/")
    st.query_params.update({"site": picked_site, "device": picked_device})


# The picker offers the label group; the device shown stays choosable even outside it.
picker = [k for k in known if group is None or tuple(k.split("/", 1)) in group]
if f"{site}/{device}" in known:
    st.session_state["device_pick"] = f"{site}/{device}"
    if f"{site}/{device}" not in picker:
        picker.append(f"{site}/{device}")
st.selectbox("Device", options=picker, key="device_pick", on_change=_open_picked)

match = devices[(devices["site"] == site) & (devices["device"] == device)]
if match.empty:
    st.warning(f"No device {site}/{device} has ever reported.")
    st.stop()
row = match.iloc[0]
now = pd.Timestamp(view.now_ns, unit="ns", tz="UTC")

st.header(f"{site} / {device}")
cols = st.columns(4)
cols[0].markdown(
    f"<span style='background:{charts.HEALTH_COLORS[row['state']]};color:white;padding:4px 10px;"
    f"border-radius:6px;font-weight:700'>{row['state']}</span>",
    unsafe_allow_html=True,
)
cols[0].caption(str(row["reason"]))
since = row["since"]
cols[1].metric(
    "Since (UTC)",
    "-"
    if pd.isna(since)
    else since.strftime("%H:%M" if since.date() == now.date() else "%m-%d %H:%M"),
)
cols[2].metric("Last telemetry", ui.ago(row["last_seen"], now))
cols[3].page_link(
    ui.PAGE_TRENDS,
    label="Open in trends",
    icon=":material/show_chart:",
    query_params={"devices": f"{site}/{device}"},
)

info = st.columns(4)
info[0].metric("Model", row["model"] or "-")
info[1].metric("Model version", row["model_version"] or "-")
info[2].metric("Firmware", row["firmware"] or "-")
has_coords = pd.notna(row["lat"]) and pd.notna(row["lon"])
info[3].metric("Location", f"{row['lat']:.2f}, {row['lon']:.2f}" if has_coords else "-")

st.subheader("Retirement")
retired = bool(row["retired"])
if retired:
    st.info(
        f"Retired by {row['retired_by']} at {row['retired_at']:%Y-%m-%d %H:%M} UTC: hidden from "
        "the fleet overview unless it reports again or is reinstated.",
        icon=":material/inventory_2:",
    )
else:
    st.caption(
        "A device that is gone for good stays listed (OFFLINE) until an operator retires it. "
        "Retiring is recorded with who, when and note, and can be undone."
    )
if user.may_act:
    retire_note = st.text_input(
        "Note", key="device_retire_note", max_chars=1000, placeholder="Why (optional)"
    )
    action = DEVICE_ACTION_REINSTATE if retired else DEVICE_ACTION_RETIRE
    if st.button(
        "Reinstate" if retired else "Retire",
        key="device_retire",
        type="secondary",
        icon=":material/undo:" if retired else ":material/inventory_2:",
    ):
        try:
            data.record_device_action(
                connection,
                user=user,
                site=site,
                device=device,
                action=action,
                note=(retire_note or "").strip(),
            )
        except (data.StoreUnavailableError, PermissionError, ValueError) as exc:
            st.error(str(exc))
        else:
            done = "Reinstated" if retired else "Retired"
            st.session_state["device_flash"] = f"{done} {site}/{device} as {user.name}."
            st.rerun()
else:
    st.caption(f"{user.name} is a {user.role}: only operators may retire or reinstate devices.")
actions = ui.load(data.load_device_actions, connection)
if actions:
    mine_actions = [a for a in actions if a.site == site and a.device == device]
    if mine_actions:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "time": pd.Timestamp(a.ts_ns, unit="ns", tz="UTC"),
                        "action": a.action,
                        "by": a.user,
                        "note": a.note,
                    }
                    for a in reversed(mine_actions)
                ],
                columns=["time", "action", "by", "note"],
            ),
            hide_index=True,
            key="device_actions_table",
        )

recent = ui.load(data.load_recent_metrics, connection, site, device)
all_alerts = alerts_loaded[1] if alerts_loaded is not None else []
device_alerts = [r for r in all_alerts if (r.site, r.device) == (site, device)]
st.subheader("Last 24 h")
day = preset_range("24 h", datetime.now(UTC))
day_plan = plan_for(day)
marks = charts.alert_marks_frame(
    device_alerts, start=pd.Timestamp(day.start), stop=pd.Timestamp(day.stop)
)
metric_names = [str(m) for m in recent["metric"]] if recent is not None else []
open_first = [r for r in device_alerts if r.is_open] or device_alerts
for metric in focus.key_metrics(metric_names, open_first):
    day_series = ui.load(data.load_series, connection, ((site, device),), metric, day, day_plan)
    if day_series is None:
        break
    figure = charts.trend_figure(day_series, metric=metric, max_gap_s=day_plan.gap_seconds)
    st.plotly_chart(charts.add_alert_marks(figure, marks), key=f"device_day_{metric}")
if not metric_names:
    st.info("No telemetry from this device to chart.")

st.subheader("Recent metrics")
if recent is not None:
    if recent.empty:
        st.info("No telemetry from this device in the last 30 days.")
    else:
        st.dataframe(
            recent, hide_index=True, key="device_metrics", column_config=ui.column_config(recent)
        )

range_label = st.radio(
    "History", options=["24 h", "7 d", "30 d"], index=1, horizontal=True, key="device_range"
)
history_range = preset_range(range_label if range_label in PRESETS else "7 d", datetime.now(UTC))

st.subheader("Alerts")
if alerts_loaded is not None:
    alerts_now_ns, records = alerts_loaded
    mine = [r for r in records if r.site == site and r.device == device]
    if not mine:
        st.info("No alerts from this device.")
    else:
        frame = data.alerts_frame(mine, alerts_now_ns)
        st.dataframe(
            ui.styled(frame.drop(columns=["alert_id", "site", "device"]), severity="severity"),
            hide_index=True,
            key="device_alerts",
            column_config=ui.column_config(frame),
        )

st.subheader("Online / offline history")
history = ui.load(data.load_status_history, connection, site, device, history_range)
if history is not None:
    if history.empty:
        st.info(f"No status message from this device in the last {range_label}.")
    else:
        st.plotly_chart(charts.status_timeline_figure(history, stop=now), key="device_status_fig")
        st.dataframe(
            history.sort_values("time", ascending=False),
            hide_index=True,
            key="device_status_table",
            column_config=ui.column_config(history),
        )
