"""Ingest health page: message rates, rejects by reason with the newest dead letters, write
latency, queue depth and lag, all from the ingest's own `ingest_stats` and `dead_letter`."""

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
latest = stats.iloc[-1] if not stats.empty else None


def latest_value(column: str, digits: int = 0) -> str:
    if latest is None or column not in latest or pd.isna(latest[column]):
        return "-"
    return f"{float(latest[column]):,.{digits}f}"


cols = st.columns(5)
cols[0].metric(
    "Last report",
    ui.ago(last_report, now),
    border=True,
    help=f"the ingest reports every {beat.interval_s:g} s",
)
cols[1].metric("Write latency p50 (ms)", latest_value("write_latency_ms_p50", 1), border=True)
cols[2].metric("Queue depth", latest_value("queue_depth"), border=True)
cols[3].metric("Lag (ms)", latest_value("lag_ms"), border=True)
cols[4].metric("Dead letters", sum(codes.values()), border=True, help=f"in the last {range_label}")

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
    left, right = st.columns(2)
    with left:
        st.plotly_chart(
            charts.lines_figure(
                stats, columns=("queue_depth",), title="Queue depth", yaxis_title="messages"
            ),
            key="ingest_queue_fig",
        )
    with right:
        st.plotly_chart(
            charts.lines_figure(
                stats, columns=("lag_ms",), title="Lag (receipt to stored)", yaxis_title="ms"
            ),
            key="ingest_lag_fig",
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
