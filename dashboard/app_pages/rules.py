"""Rules page: each rule's state and last evaluation, the notification log, silences and
maintenance windows (operators create and end them here; viewers only see them)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

from dashboard import rules_data, ui
from dashboard.auth import PermissionDeniedError
from dashboard.data import StoreUnavailableError
from edgewatch.labels import selector_text
from edgewatch.silences import KIND_MAINTENANCE, KIND_SILENCE, new_silence

NS_PER_SECOND = 1_000_000_000
DURATIONS_H: dict[str, float] = {"1 h": 1, "4 h": 4, "12 h": 12, "24 h": 24, "7 d": 168}

settings, connection, user = ui.context()
st.title("Rules")

flash = st.session_state.pop("rules_flash", None)
if flash:
    st.success(flash, icon=":material/check_circle:")


@st.fragment(run_every=settings.dashboard_refresh_seconds)
def rule_states() -> None:
    ui.end_with_session(settings)
    loaded = ui.load(rules_data.load_rules_view, connection, settings.alert_lookback_days)
    if loaded is None:
        return
    evals, instances, log = loaded
    st.subheader("Rules")
    if evals.empty:
        st.info(
            "The alerter has not evaluated any rule yet: start it with `edgewatch alerter` "
            "(`edgewatch demo` runs it).",
            icon=":material/hourglass_empty:",
        )
    else:
        st.dataframe(
            evals,
            hide_index=True,
            key="rules_evals",
            column_config={
                "last_evaluation": st.column_config.DatetimeColumn(
                    "last evaluation", format=ui.TIME_FORMAT
                ),
                "cycle_ms": st.column_config.NumberColumn("cycle (ms)", format="%.0f"),
            },
        )
    if not instances.empty:
        st.caption("Pending and firing now")
        st.dataframe(
            instances,
            hide_index=True,
            key="rules_instances",
            column_config=ui.column_config(instances),
        )
    st.subheader("Notification log")
    if log.empty:
        st.caption("No notification yet.")
    else:
        st.dataframe(log, hide_index=True, key="rules_log", column_config=ui.column_config(log))
        st.caption(
            "Every record: `pending` (recorded before it is sent), each attempt (`sent`, "
            "`failed` with the receiver's answer), `suppressed` (silenced or inhibited). "
            "The key is the notification's idempotency key, the same on every retry."
        )


rule_states()

st.subheader("Silences and maintenance windows")
silences = ui.load(rules_data.load_silences, connection)
now_ns = time.time_ns()
if silences:
    st.dataframe(
        rules_data.silences_frame(silences, now_ns),
        hide_index=True,
        key="rules_silences",
        column_config={
            "starts": st.column_config.DatetimeColumn("starts", format=ui.TIME_FORMAT),
            "ends": st.column_config.DatetimeColumn("ends", format=ui.TIME_FORMAT),
        },
    )
else:
    st.caption("None.")

if not user.may_act:
    st.info(f"{user.name} is a {user.role}: only operators create or end silences.")
    st.stop()

with st.form("rules_new_silence", clear_on_submit=False):
    st.markdown("**New silence or maintenance window**")
    kind = st.radio(
        "Kind",
        [KIND_SILENCE, KIND_MAINTENANCE],
        horizontal=True,
        key="rules_kind",
        help="A silence mutes notifications (alerts are still recorded). A maintenance "
        "window also shows its devices as MAINTENANCE and raises no device_offline.",
    )
    c1, c2, c3 = st.columns(3)
    site = c1.text_input("Site", key="rules_site", placeholder="plant-a or plant-*")
    device = c2.text_input("Device", key="rules_device", placeholder="cam-7 or empty for all")
    alert_type = c3.text_input("Alert type", key="rules_type", placeholder="e.g. device_offline")
    labels = st.text_input(
        "Device labels (optional)",
        key="rules_labels",
        placeholder="ring=canary,hardware=jetson-orin",
        help="key=value terms, comma-separated; a device matches when it carries all of "
        "them (its status labels or an operator's, as the Models page shows them).",
    )
    d1, d2 = st.columns(2)
    length = d1.selectbox("Length", list(DURATIONS_H), key="rules_length")
    rrule = d2.text_input(
        "Repeats (RRULE or cron, optional)",
        key="rules_rrule",
        placeholder="FREQ=WEEKLY;BYDAY=SU or 0 2 * * sun",
        help="An RFC 5545 RRULE (each occurrence starts now's time of day) or a 5-field "
        "cron expression (minute hour day-of-month month day-of-week, UTC: when each "
        "occurrence starts); each lasts 'Length', until 'Repeat until'.",
    )
    until_days = st.number_input(
        "Repeat until (days from now, recurring only)", 1, 3650, 90, key="rules_until"
    )
    reason = st.text_area("Why", key="rules_reason", max_chars=1000)
    submitted = st.form_submit_button("Create", type="primary")

if submitted:
    start = datetime.now(tz=UTC)
    hours = DURATIONS_H[length]
    end = start + (timedelta(days=int(until_days)) if rrule else timedelta(hours=hours))
    try:
        silence = new_silence(
            kind=kind,
            created_by=user.name,
            reason=reason,
            now_ns=now_ns,
            starts_ns=int(start.timestamp() * NS_PER_SECOND),
            ends_ns=int(end.timestamp() * NS_PER_SECOND),
            site=site.strip(),
            device=device.strip(),
            alert_type=alert_type.strip(),
            rrule=rrule.strip(),
            duration_s=hours * 3600 if rrule else 0.0,
            labels=labels,
        )
        rules_data.create_silence(connection, user=user, silence=silence)
    except (ValueError, PermissionDeniedError, StoreUnavailableError) as exc:
        st.error(str(exc))
    else:
        st.session_state["rules_flash"] = f"{kind} {silence.silence_id} created"
        st.rerun()

active = [s for s in (silences or []) if not s.over_at(now_ns)]
if active:
    with st.form("rules_expire"):
        st.markdown("**End a silence or window now**")
        picked = st.selectbox(
            "Which",
            [s.silence_id for s in active],
            format_func=lambda sid: next(
                f"{s.kind} {sid}: {s.site or '*'}/{s.device or '*'}/{s.type or '*'}"
                f"{' ' + selector_text(s.labels) if s.labels else ''} ({s.reason})"
                for s in active
                if s.silence_id == sid
            ),
            key="rules_expire_id",
        )
        why = st.text_input("Why", key="rules_expire_why")
        if st.form_submit_button("End now"):
            try:
                rules_data.expire_silence(connection, user=user, silence_id=picked, reason=why)
            except (ValueError, PermissionDeniedError, StoreUnavailableError) as exc:
                st.error(str(exc))
            else:
                st.session_state["rules_flash"] = f"{picked} ended"
                st.rerun()

st.caption(f"Times in UTC; now {pd.Timestamp(now_ns, unit='ns', tz='UTC'):%Y-%m-%d %H:%M}.")
