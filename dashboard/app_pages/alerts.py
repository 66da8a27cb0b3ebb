"""Alerts page: live feed of critical and major alerts, filters, review actions, statistics,
and the audit trail of every operator action as CSV."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from dashboard import audit, charts, data, rules_data, ui
from dashboard.ranges import preset_range
from edgewatch.alerts import (
    ACTION_ACK,
    ACTION_COMMENT,
    ACTION_RESOLVE,
    AlertRecord,
    AlertState,
    noisiest_types,
    review_stats,
)
from edgewatch.models import SEVERITIES

NS_PER_SECOND = 1_000_000_000
SNOOZE_SECONDS: dict[str, int] = {
    "no snooze": 0,
    "15 min": 900,
    "1 h": 3600,
    "4 h": 14400,
    "24 h": 86400,
}
OPENED_WITHIN_SECONDS: dict[str, int | None] = {
    "24 h": 86400,
    "7 d": 7 * 86400,
    "30 d": 30 * 86400,
    "all": None,
}
STATES = [str(s) for s in AlertState]

settings, connection, user = ui.context()
st.title("Alerts")

flash = st.session_state.pop("alerts_flash", None)
if flash:
    st.success(flash, icon=":material/check_circle:")


@st.fragment(run_every=settings.dashboard_refresh_seconds)
def live_feed() -> None:
    """Open critical and major alerts, refreshed on its own without rerunning the page."""
    ui.end_with_session(settings)
    loaded = ui.load(data.load_alerts, connection, settings.alert_lookback_days)
    if loaded is None:
        return
    now_ns, records = loaded
    frame = data.alerts_frame(records, now_ns)
    urgent = frame[
        frame["severity"].isin(["critical", "major"]) & (frame["state"] != AlertState.RESOLVED)
    ].sort_values("last", ascending=False)
    st.subheader(f"Live: {len(urgent)} open critical/major")
    if urgent.empty:
        st.success("No open critical or major alert.", icon=":material/verified:")
        return
    st.dataframe(
        ui.styled(
            urgent[["severity", "state", "site", "device", "type", "message", "count", "last"]],
            severity="severity",
        ),
        hide_index=True,
        key="alerts_live_table",
        column_config=ui.column_config(urgent),
        height=min(400, 38 + 35 * len(urgent)),
    )
    st.caption(f"Refreshes every {settings.dashboard_refresh_seconds:g} s.")


def audit_section() -> None:
    """The export of every operator action; shown even when no alert matches the filters."""
    st.subheader("Audit trail")
    st.caption(
        "Every operator action stored in the ops bucket (alert reviews and every other kind of "
        "action): who, when, what, on which device, and the note, as CSV."
    )
    audit_span = st.selectbox(
        "Actions of the last",
        ["24 h", "7 d", "30 d", "90 d", "1 y"],
        index=2,
        key="alerts_audit_span",
    )
    prepare = st.button(
        "Prepare the audit trail", key="alerts_audit_prepare", icon=":material/fact_check:"
    )
    if prepare:
        audit_range = preset_range(audit_span or "30 d", datetime.now(UTC))
        audit_rows = ui.load(data.load_audit_rows, connection, audit_range)
        if audit_rows is not None:
            trail = audit.audit_frame(audit_rows)
            st.session_state["alerts_audit_csv"] = (
                audit.audit_csv(trail),
                f"edgewatch-audit-{audit_range.start:%Y%m%dT%H%M}-{audit_range.stop:%Y%m%dT%H%M}.csv",
                len(trail),
            )
    prepared = st.session_state.get("alerts_audit_csv")
    if prepared is not None:
        csv_bytes, csv_name, csv_rows = prepared
        st.download_button(
            f"Download the audit trail ({csv_rows} actions)",
            data=csv_bytes,
            file_name=csv_name,
            mime="text/csv",
            key="alerts_audit_csv_download",
            on_click="ignore",
            icon=":material/download:",
        )


live_feed()

loaded = ui.load_or_stop(data.load_alerts, connection, settings.alert_lookback_days)
now_ns, records = loaded
fleet_view = ui.load(data.load_fleet, connection)
labels = ui.device_labels(connection, fleet_view) if fleet_view is not None else {}
group = ui.matching_keys(labels, ui.label_filter(labels, key="alerts_f_labels"))
frame = ui.keep_devices(data.alerts_frame(records, now_ns), group)
by_id: dict[str, AlertRecord] = {r.alert_id: r for r in records}

st.subheader("All alerts")
if frame.empty:
    st.info(
        f"No alert in the last {settings.alert_lookback_days} days. Devices raise alerts on "
        "`<root>/<site>/<device>/alert`."
    )
    audit_section()
    st.stop()

f1, f2, f3, f4, f5, f6 = st.columns(6)
severities = f1.multiselect("Severity", SEVERITIES, key="alerts_f_severity", placeholder="All")
states = f2.multiselect(
    "State", STATES, default=["active", "acknowledged"], key="alerts_f_state", placeholder="All"
)
sites = f3.multiselect(
    "Site", sorted(frame["site"].unique()), key="alerts_f_site", placeholder="All"
)
device_options = sorted(
    frame[frame["site"].isin(sites)]["device"].unique() if sites else frame["device"].unique()
)
devices = f4.multiselect("Device", device_options, key="alerts_f_device", placeholder="All")
types = f5.multiselect(
    "Type", sorted(frame["type"].unique()), key="alerts_f_type", placeholder="All"
)
within = f6.selectbox("Opened within", list(OPENED_WITHIN_SECONDS), index=3, key="alerts_f_within")

shown = frame
if severities:
    shown = shown[shown["severity"].isin(severities)]
if states:
    shown = shown[shown["state"].isin(states)]
if sites:
    shown = shown[shown["site"].isin(sites)]
if devices:
    shown = shown[shown["device"].isin(devices)]
if types:
    shown = shown[shown["type"].isin(types)]
limit_s = OPENED_WITHIN_SECONDS.get(within or "all")
if limit_s is not None:
    cutoff = pd.Timestamp(now_ns - limit_s * NS_PER_SECOND, unit="ns", tz="UTC")
    shown = shown[shown["opened"] >= cutoff]
shown = shown.reset_index(drop=True)

selection = st.dataframe(
    ui.styled(shown.drop(columns=["alert_id"]), severity="severity"),
    hide_index=True,
    key="alerts_table",
    column_config=ui.column_config(shown),
    on_select="rerun",
    selection_mode="multi-row",
)
selected_rows = list(selection.selection.rows) if selection is not None else []
selected_ids = [str(shown.iloc[i]["alert_id"]) for i in selected_rows if i < len(shown)]
st.caption(f"{len(shown)} of {len(frame)} alerts shown. Select rows to act on several at once.")

st.subheader("Review")
if not user.may_act:
    st.info(f"{user.name} is a {user.role}: only operators may act on alerts.")


def label_of(alert_id: str) -> str:
    record = by_id[alert_id]
    where = f"{record.site}/{record.device}"
    # No review state here: it changes under a kept selection, and the history shows it.
    return f"[{record.severity}] {where} {record.type} (opened {ui.short_time(record.opened_ns)})"


ids = list(shown["alert_id"])
if not ids:
    st.info("No alert matches the filters.")
    audit_section()
    st.stop()
default_index = ids.index(selected_ids[0]) if selected_ids else 0
chosen = st.selectbox("Alert", ids, index=default_index, format_func=label_of, key="alerts_pick")
bulk_ids = selected_ids or [a for a in ids if by_id[a].state_at(now_ns) == AlertState.ACTIVE]
# A viewer gets no review controls at all (and the data layer refuses a viewer's write).
note, snooze = "", None
ack = resolve = comment = bulk = False
if user.may_act:
    note = st.text_input(
        "Note", key="alerts_note", max_chars=1000, placeholder="What you found or did (optional)"
    )
    snooze = st.selectbox(
        "Snooze the acknowledgement",
        list(SNOOZE_SECONDS),
        key="alerts_snooze",
        help="After this, an alert that is still open notifies again.",
    )
    b1, b2, b3, b4 = st.columns(4)
    ack = b1.button("Acknowledge", key="alerts_ack", type="primary")
    resolve = b2.button("Resolve", key="alerts_resolve")
    comment = b3.button("Comment", key="alerts_comment", disabled=not (note or "").strip())
    bulk = b4.button(
        f"Acknowledge {len(bulk_ids)} {'selected' if selected_ids else 'active shown'}",
        key="alerts_bulk_ack",
        disabled=not bulk_ids,
    )


def act(targets: list[str], action: str, done: str) -> None:
    snooze_s = SNOOZE_SECONDS.get(snooze or "no snooze", 0) if action == ACTION_ACK else 0
    until_ns = time.time_ns() + snooze_s * NS_PER_SECOND if snooze_s else 0
    try:
        for alert_id in targets:
            data.record_action(
                connection,
                user=user,
                alert=by_id[alert_id],
                action=action,
                note=(note or "").strip(),
                snooze_until_ns=until_ns,
            )
    except data.StoreUnavailableError as exc:
        st.error(str(exc))
        return
    except (PermissionError, ValueError) as exc:
        st.error(str(exc))
        return
    st.session_state["alerts_flash"] = f"{done} {len(targets)} alert(s) as {user.name}."
    st.rerun()


if chosen is not None:
    if ack:
        act([chosen], ACTION_ACK, "Acknowledged")
    if resolve:
        act([chosen], ACTION_RESOLVE, "Resolved")
    if comment:
        act([chosen], ACTION_COMMENT, "Commented on")
if bulk:
    act(bulk_ids, ACTION_ACK, "Acknowledged")

if chosen is not None:
    record = by_id[chosen]
    st.markdown(
        f"**History of {record.site}/{record.device} {record.type}** "
        f"(state: {record.state_at(now_ns)}, raised {record.count}×)"
    )
    history = pd.DataFrame(
        [
            {
                "time": pd.Timestamp(h.ts_ns, unit="ns", tz="UTC"),
                "what": h.what,
                "by": h.by,
                "note": h.note,
            }
            for h in record.history
        ],
        columns=["time", "what", "by", "note"],
    )
    # The alerter's delivery log: every notification attempt and its outcome.
    rules_view = ui.load(rules_data.load_rules_view, connection, settings.alert_lookback_days)
    if rules_view is not None:
        history = rules_data.merge_notifications(history, rules_view[2], record.alert_id)
    st.dataframe(
        history, hide_index=True, key="alerts_history", column_config=ui.column_config(history)
    )

st.subheader("Review statistics")
stats_range = st.selectbox(
    "Over alerts opened in the last", ["24 h", "7 d", "30 d"], index=1, key="alerts_stats_range"
)
span_s = OPENED_WITHIN_SECONDS[stats_range or "7 d"] or 0
in_range = [r for r in records if r.opened_ns >= now_ns - span_s * NS_PER_SECOND]
stats = review_stats(in_range)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


s1, s2, s3, s4 = st.columns(4)
s1.metric("Alerts opened", len(in_range), border=True)
s2.metric(
    "Median time to acknowledge",
    duration(stats.median_time_to_ack_s),
    border=True,
    help=f"over {stats.acknowledged} acknowledged",
)
s3.metric(
    "Median time to resolve",
    duration(stats.median_time_to_resolve_s),
    border=True,
    help=f"over {stats.resolved} resolved",
)
noisy = noisiest_types(in_range)
s4.metric("Noisiest type", noisy[0][0] if noisy else "-", border=True)
if noisy:
    st.plotly_chart(
        charts.bar_figure(
            [t for t, _ in noisy],
            [n for _, n in noisy],
            title="Noisiest alert types (raises, repeats included)",
        ),
        key="alerts_noisy_fig",
    )


audit_section()
