"""dashboard room, I/O: what the Models page reads from InfluxDB, over a `FleetStore`.

The queries (`queries/model_*.flux`) are pushed down to storage and bounded: the status
history and operators' actions are few (births, registrations); the metrics come in at most
`METRIC_WINDOWS` windows per device, and confidence for drift as two histograms per device
counted in storage, from raw data or the rollups as `dashboard.ranges` chooses for the range.
No Streamlit here (the query benchmark reads through it too): the cache and the writes are
`dashboard.model_data`'s; the pure frames are `dashboard.model_view`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dashboard.frames import BEGINNING, FUTURE_SKEW
from dashboard.model_view import OpsState, StatusRow, parse_history, parse_ops
from dashboard.ranges import QueryPlan, Source, TimeRange, plan_for
from dashboard.store import FleetStore

METRIC_WINDOWS = 24


@dataclass(frozen=True, slots=True)
class ModelData:
    """Everything the Models page shows for one range, as rows."""

    history: list[StatusRow]
    ops: OpsState
    metric_rows: list[dict[str, Any]]
    confidence_rows: list[dict[str, Any]]
    alert_counts: dict[tuple[str, str], int]
    metric_plan: QueryPlan
    drift_plan: QueryPlan
    # The range read: the one asked for, starting at the fleet's first model status if later.
    time_range: TimeRange


def _windows_query(base: str, plan: QueryPlan) -> str:
    return base if plan.source == Source.RAW else f"{base}_rollup"


def read_models(store: FleetStore, time_range: TimeRange, now: datetime) -> ModelData:
    """The Models page's reads for one range (six queries)."""
    conn = store.connection
    forever = {"start": BEGINNING, "stop": now + FUTURE_SKEW}
    history = parse_history(
        store.query("model_status_history", {**forever, "bucket": conn.bucket_state})
    )
    ops = parse_ops(store.query("model_ops_actions", {**forever, "bucket": conn.bucket_ops}))
    time_range = effective_range(time_range, history)
    span = {"start": time_range.start, "stop": time_range.stop}
    metric_plan = plan_for(time_range, METRIC_WINDOWS, now=now)
    metric_rows = store.query(
        _windows_query("model_metric_windows", metric_plan),
        {**span, "bucket": conn.bucket_for(metric_plan.source), "every": metric_plan.window},
    )
    drift_plan = plan_for(time_range, METRIC_WINDOWS, now=now)
    third = time_range.span / 3
    confidence_rows = store.query(
        _windows_query("model_confidence_histogram", drift_plan),
        {
            **span,
            "bucket": conn.bucket_for(drift_plan.source),
            "split1": time_range.start + third,
            "split2": time_range.stop - third,
        },
    )
    alert_rows = store.query("model_alert_counts", {**span, "bucket": conn.bucket_state})
    alert_counts = {(str(r["site"]), str(r["device"])): int(r["_value"] or 0) for r in alert_rows}
    return ModelData(
        history, ops, metric_rows, confidence_rows, alert_counts, metric_plan, drift_plan,
        time_range,
    )  # fmt: skip


MIN_EFFECTIVE_SPAN = timedelta(minutes=1)


def effective_range(time_range: TimeRange, history: list[StatusRow]) -> TimeRange:
    """The range, starting no earlier than the first model status the fleet ever sent.

    Before it there is no data: drift's baseline (the range's first third) and the alert
    rate per device-day would otherwise be diluted by time when no device reported, which on
    a fresh fleet (the demo) would hide the first minutes' story for most of an hour.
    """
    if not history:
        return time_range
    first = datetime.fromtimestamp(history[0].ts_ns / 1e9, tz=UTC)
    if first <= time_range.start or time_range.stop - first < MIN_EFFECTIVE_SPAN:
        return time_range
    return TimeRange(start=first, stop=time_range.stop)


def span_days(time_range: TimeRange) -> float:
    return time_range.span / timedelta(days=1)


Key = tuple[str, str]


def read_label_overlays(store: FleetStore, now: datetime) -> dict[Key, dict[str, str | None]]:
    """Operators' label actions per device (the Models page's ops query), folded."""
    rows = store.query(
        "model_ops_actions",
        {"start": BEGINNING, "stop": now + FUTURE_SKEW, "bucket": store.connection.bucket_ops},
    )
    return parse_ops(rows).labels
