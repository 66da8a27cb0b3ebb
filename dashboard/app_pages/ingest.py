"""Ingest health page: message rates (summed over replicas), rejects by reason with the newest
dead letters, write latency, and per instance queue depth, lag and journal fill, all from the
ingest's own `ingest_stats` and `dead_letter`."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from dashboard import charts, data, ui
from dashboard.ranges import preset_range

RATE_COUNTERS = ("received", "accepted", "rejected")

settings, connection, user = ui.context()
st.title("Ingest health")

view = ui.load_or_stop(data.load_fleet, connection)
now = pd.Timestamp(view.now_ns, unit="ns", tz="UTC")
beat = view.heartbeat
ui.ingest_banner(view)

range_label = st.radio(
    "Range", ["1 h", "24 h", "7 d"], index=0, horizontal=True, key="ingest_range"
)
time_range = preset_range(range_label or "1 h", datetime.now(UTC))
loaded = ui.load_or_stop(data.load_ingest, connection, time_range)
stats, letters, codes = loaded

last_report = None if beat.last_ns is None else pd.Timestamp(beat.last_ns, unit="ns", tz="UTC")
instances = data.ingest_instances(stats)
latest = stats.sort_values("time").groupby("instance").last() if not stats.empty else None


def fleet_value(column: str, how: str, digits: int = 0) -> str:
    """The newest value of `column` over all instances: their sum, or the worst (max)."""
    if latest is None or column not in latest or latest[column].isna().all():
        return "-"
    values = pd.to_numeric(latest[column], errors="coerce")
    value = values.sum() if how == "sum" else values.max()
    return f"{float(value):,.{digits}f}"


fill = pd.to_numeric(instances["journal_fill"], errors="coerce").max() if len(instances) else None
warn_share = settings.ingest_journal_warn_share

cols = st.columns(6)
cols[0].metric(
    "Last report",
    ui.ago(last_report, now),
    border=True,
    help=f"the ingest reports every {beat.interval_s:g} s",
)
cols[1].metric("Write latency p50 (ms)", fleet_value("write_latency_ms_p50", "max", 1), border=True)
cols[2].metric("Queue depth", fleet_value("queue_depth", "sum"), border=True, help="all instances")
cols[3].metric("Lag (ms)", fleet_value("lag_ms", "max"), border=True, help="the largest instance")
cols[4].metric(
    "Journal fill",
    "-" if fill is None or pd.isna(fill) else f"{fill:.1%}",
    border=True,
    help="the fullest instance's on-disk journal, of EDGEWATCH_INGEST_JOURNAL_MAX_BYTES",
)
cols[5].metric("Dead letters", sum(codes.values()), border=True, help=f"in the last {range_label}")

if fill is not None and not pd.isna(fill) and fill >= warn_share:
    st.warning(
        f"**An ingest journal is {fill:.0%} full.** InfluxDB is down or not keeping up; the "
        "journal holds what the ingest acknowledged. At 100% the ingest stops acknowledging "
        "and the broker's memory becomes the only buffer. Check InfluxDB and the ingest logs, "
        "or raise EDGEWATCH_INGEST_JOURNAL_MAX_BYTES.",
        icon=":material/warning:",
    )

if beat.last_ns is None:
    st.info(
        "The ingest has never reported here. Start it with `edgewatch ingest`; it writes its "
        f"self-metrics every {settings.ingest_stats_interval_seconds:g} s."
    )

if not stats.empty:
    rates = data.counter_rates(stats, RATE_COUNTERS)
    left, right = st.columns(2)
    with left:
        st.plotly_chart(
            charts.lines_figure(
                rates, columns=RATE_COUNTERS, title="Messages per second", yaxis_title="msg/s"
            ),
            key="ingest_rates_fig",
        )
    with right:
        st.plotly_chart(
            charts.lines_figure(
                stats,
                columns=("write_latency_ms_p50", "write_latency_ms_max"),
                title="InfluxDB write latency",
                yaxis_title="ms",
            ),
            key="ingest_latency_fig",
        )
    names = sorted(str(i) for i in stats["instance"].dropna().unique())
    left, right = st.columns(2)
    with left:
        st.plotly_chart(
            charts.lines_figure(
                data.per_instance(stats, "queue_depth"),
                columns=names,
                title="Queue depth per instance",
                yaxis_title="messages",
            ),
            key="ingest_queue_fig",
        )
    with right:
        st.plotly_chart(
            charts.lines_figure(
                data.per_instance(stats, "lag_ms"),
                columns=names,
                title="Lag per instance (receipt to stored)",
                yaxis_title="ms",
            ),
            key="ingest_lag_fig",
        )
    journal_fill = data.per_instance(stats, "journal_fill")
    st.plotly_chart(
        charts.lines_figure(
            journal_fill.assign(**{n: journal_fill[n] * 100 for n in names if n in journal_fill}),
            columns=names,
            title=f"Journal fill per instance (warning at {warn_share:.0%})",
            yaxis_title="% of the limit",
        ),
        key="ingest_journal_fig",
    )
    st.subheader("Instances")
    st.dataframe(
        instances,
        hide_index=True,
        key="ingest_instances",
        column_config={
            **ui.column_config(instances),
            "as of": st.column_config.DatetimeColumn("as of", format=ui.TIME_FORMAT),
            "journal_bytes": st.column_config.NumberColumn("journal bytes", format="bytes"),
            "journal_fill": st.column_config.ProgressColumn(
                "journal fill", min_value=0.0, max_value=1.0, format="percent"
            ),
        },
    )
elif beat.last_ns is not None:
    st.info(f"No ingest report in the last {range_label}.")

st.subheader("Rejects by reason")
if codes:
    st.plotly_chart(
        charts.bar_figure(
            list(codes), list(codes.values()), title=f"Dead letters by code, last {range_label}"
        ),
        key="ingest_codes_fig",
    )
else:
    st.success(f"No message was rejected in the last {range_label}.", icon=":material/verified:")

st.subheader("Newest dead letters")
if letters.empty:
    st.caption("None in this range.")
else:
    st.dataframe(
        letters,
        hide_index=True,
        key="ingest_dead_letters",
        column_config={
            **ui.column_config(letters),
            "payload": st.column_config.TextColumn("payload (excerpt)", width="large"),
        },
    )
