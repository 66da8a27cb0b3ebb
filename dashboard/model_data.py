"""dashboard room, I/O: what the Models page reads from InfluxDB and the actions it stores.

The queries (`queries/model_*.flux`) are pushed down to storage and bounded: the status
history and operators' actions are few (births, registrations); the metrics come in at most
`METRIC_WINDOWS` windows per device, and confidence for drift as two histograms per device
counted in storage, from raw data or the rollups as `dashboard.ranges` chooses for the range.
Cached with `st.cache_data`, keyed on the connection and the range; the pure frames are
`dashboard.model_view`'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dashboard.auth import User, require_operator
from dashboard.data import (
    BEGINNING,
    FUTURE_SKEW,
    Connection,
    FleetStore,
    cached_data,
    store_for,
)
from dashboard.model_view import OpsState, StatusRow, parse_history, parse_ops
from dashboard.ranges import QueryPlan, Source, TimeRange, plan_for
from edgewatch.model_fleet import validate_label, validate_release
from edgewatch.schema import label_action_line, release_action_line

logger = logging.getLogger(__name__)

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


@cached_data
def load_models(connection: Connection, time_range: TimeRange) -> ModelData:
    return read_models(store_for(connection), time_range, datetime.now(tz=UTC))


def register_release(
    connection: Connection, *, user: User, model: str, version: str, sha256: str, note: str = ""
) -> None:
    """Store an operator's release (`release_action`, ops bucket), who and when."""
    require_operator(user)
    digest = validate_release(model, version, sha256, user.name)
    record = release_action_line(
        model=model, version=version, sha256=digest, user=user.name, note=note,
        ts_ns=time.time_ns(),
    )  # fmt: skip
    store_for(connection).write_ops(record, f"release {model} {version}")
    logger.info("release %s %s registered by %s", model, version, user.name)
    load_models.clear()


def set_label(
    connection: Connection,
    *,
    user: User,
    site: str,
    device: str,
    key: str,
    value: str,
    action: str = "set",
) -> None:
    """Store an operator's device label (`label_action`, ops bucket), who and when."""
    require_operator(user)
    validate_label(key, value, action, user.name)
    record = label_action_line(
        site=site, device=device, key=key, value=value, action=action, user=user.name,
        ts_ns=time.time_ns(),
    )  # fmt: skip
    store_for(connection).write_ops(record, f"label {key} on {site}/{device}")
    logger.info("label %s on %s/%s: %s by %s", key, site, device, action, user.name)
    load_models.clear()


def span_days(time_range: TimeRange) -> float:
    return time_range.span / timedelta(days=1)


def parse_group(text: str) -> Mapping[str, str]:
    """`ring=canary` -> {"ring": "canary"}; empty -> no filter."""
    if "=" not in text:
        return {}
    key, value = text.split("=", 1)
    return {key: value}
