"""Models page: which model and version runs where, how each version performs, canary
against stable, drifting devices, integrity of the model files, rollouts on a timeline.

Thin: reads through `dashboard.model_data`, frames and figures from `dashboard.model_view`,
statistics from `edgewatch.model_fleet` (the same functions the alerter's rules call).
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from dashboard import model_data, model_view, ui
from dashboard.auth import PermissionDeniedError
from dashboard.data import StoreUnavailableError
from dashboard.ranges import PRESETS, preset_range
from edgewatch.model_fleet import MIN_DEVICES_PER_GROUP, PSI_BINS, PSI_THRESHOLD

settings, connection, user = ui.context()
st.title("Models")

c1, c2 = st.columns(2)
range_label = c1.selectbox("Range", list(PRESETS), index=0, key="models_range")
now = datetime.now(tz=UTC)
time_range = preset_range(range_label or "1 h", now)
loaded = ui.load_or_stop(model_data.load_models, connection, time_range)

every_device = model_view.inventory(loaded.history, loaded.ops)
# The shared label filter (in the URL like on every page), over the effective labels.
selector = ui.label_filter(
    {(d.site, d.device): d.labels for d in every_device}, key="models_labels", container=c2
)
devices = model_view.filter_devices(every_device, selector)
keys = {(d.site, d.device) for d in devices}

if not devices:
    st.info(
        "No device has reported a model yet. Cameras name theirs in their status "
        "(`model`, `model_version`, and since contract v1.1 `model_sha256` and `labels`).",
        icon=":material/hourglass_empty:",
    )
    st.stop()

st.subheader("Versions in the fleet")
st.dataframe(model_view.versions_frame(devices), hide_index=True, key="models_versions")

windows = model_view.window_frame(loaded.metric_rows, loaded.history, keys)
values = model_view.device_values(windows)
st.subheader("Performance per version")
since = (
    f" Since {loaded.time_range.start:%Y-%m-%d %H:%M} UTC, the fleet's first model status."
    if loaded.time_range.start > time_range.start
    else ""
)
st.caption(
    f"{loaded.metric_plan.label}. Percentiles are across devices, of each device's mean "
    f"over the range while it ran that version.{since}"
)
performance = model_view.performance_frame(
    values, loaded.alert_counts, model_data.span_days(loaded.time_range)
)
st.dataframe(performance, hide_index=True, key="models_performance")
st.plotly_chart(model_view.confidence_figure(windows), key="models_confidence")

st.subheader("Canary against stable")
versions = sorted(windows["version"].unique()) if not windows.empty else []
changes = model_view.rollout_changes([r for r in loaded.history if (r.site, r.device) in keys])
if len(versions) >= 2:
    first_a, first_b = model_view.default_pair(changes, versions)
    k1, k2 = st.columns(2)
    version_a = k1.selectbox("Version a (canary)", versions, index=versions.index(first_a),
                             key="models_a")  # fmt: skip
    version_b = k2.selectbox("Version b (stable)", versions, index=versions.index(first_b),
                             key="models_b")  # fmt: skip
    results = model_view.compare_versions(values, version_a or "", version_b or "")
    for result in results:
        st.markdown(f"- **{result.metric}**: {result.verdict}")
    st.dataframe(model_view.comparison_frame(results), hide_index=True, key="models_compare")
    st.caption(
        "Two-sided Mann-Whitney U on per-device means (normal approximation, tie-corrected), "
        f"effect size Cliff's delta; at least {MIN_DEVICES_PER_GROUP} devices on each side."
    )
else:
    st.info("Only one version ran in this range: nothing to compare.")

st.subheader("Drift")
drift = model_view.drift_results(loaded.confidence_rows, keys)
drifting = model_view.drift_frame(drift)
st.caption(
    f"Per device: PSI of its confidence, last third of the range against its first third "
    f"({PSI_BINS} equal bins on 0..1, counted in InfluxDB from "
    f"{'raw readings' if loaded.drift_plan.source == 'raw' else 'hourly or minute means'}; "
    f"drifting at PSI >= {PSI_THRESHOLD})."
)
if drifting.empty:
    st.success(f"No drifting device among {len(drift)} with confidence readings.")
else:
    st.dataframe(drifting, hide_index=True, key="models_drifting")

st.subheader("Integrity")
flags = model_view.flags_for(devices, loaded.ops)
if flags:
    for flag in flags:
        st.error(flag.message, icon=":material/gpp_bad:")
else:
    st.success("Every reported model hash matches its release (or the fleet majority).")
st.subheader("Where each version runs")
st.dataframe(model_view.where_frame(devices, flags), hide_index=True, key="models_where")

st.subheader("Rollouts")
if changes:
    st.plotly_chart(model_view.rollout_figure(changes), key="models_rollouts")
    st.dataframe(model_view.rollout_frame(changes), hide_index=True, key="models_rollout_table")
else:
    st.info("No device changed version.")

if user.may_act:
    with st.expander("Register a release / label a device"):
        with st.form("models_release"):
            r1, r2, r3 = st.columns([2, 1, 4])
            model = r1.text_input("Model")
            version = r2.text_input("Version")
            sha = r3.text_input("sha256")
            if st.form_submit_button("Register release"):
                try:
                    model_data.register_release(
                        connection, user=user, model=model, version=version, sha256=sha
                    )
                    # Drawn above already: run the page again so the flags use the release.
                    st.rerun()
                except (ValueError, PermissionDeniedError, StoreUnavailableError) as exc:
                    st.warning(str(exc))
        with st.form("models_label"):
            l1, l2, l3 = st.columns(3)
            target = l1.selectbox("Device", [f"{d.site}/{d.device}" for d in every_device])
            label_key = l2.text_input("Label key")
            label_value = l3.text_input("Value (empty removes the label)")
            if st.form_submit_button("Set label") and target:
                site, device = target.split("/", 1)
                try:
                    model_data.set_label(
                        connection, user=user, site=site, device=device, key=label_key,
                        value=label_value, action="set" if label_value else "remove",
                    )  # fmt: skip
                    st.rerun()
                except (ValueError, PermissionDeniedError, StoreUnavailableError) as exc:
                    st.warning(str(exc))
else:
    st.caption(f"{user.name} is a {user.role}: only operators register releases and labels.")
