"""dashboard room, cache layer: the entry points the pages call, and operators' writes.

The `load_*` functions are cached (`st.cache_data`, keyed on their arguments; filters are
applied by the pages, outside the cache) over `dashboard.store.FleetStore`; the client itself
is the one `st.cache_resource`. The cache lives as long as the refresh interval the pages
promise, read from the settings on the first call, not at import. The pure frame builders
(`dashboard.frames`) and the store's names are re-exported, so a page reads `data.X` from one
place.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar

import pandas as pd
import streamlit as st
from influxdb_client.client.influxdb_client import InfluxDBClient
from pydantic import ValidationError

from dashboard.auth import User
from dashboard.frames import (
    BEGINNING,
    DEAD_LETTER_LIMIT,
    DEVICE_LOOKBACK,
    DEVICES_MARK,
    FUTURE_SKEW,
    INGEST_INSTANCE_COLUMNS,
    INGEST_STATS_MAX_WINDOWS,
    MAX_SERIES_DEVICES,
    METRIC_LOOKBACK_1H,
    NS_PER_SECOND,
    SERIES_STATS,
    Connection,
    FleetView,
    Row,
    StoreUnavailableError,
    alerts_frame,
    bool_window_rows,
    check_keys,
    check_metric,
    counter_rates,
    device_filter,
    fleet_frame,
    ingest_instances,
    ingest_stats_window,
    parse_series,
    per_instance,
    site_frame,
)
from dashboard.ranges import QueryPlan, TimeRange
from dashboard.store import (
    QUERIES_DIR,
    FleetStore,
    load_query,
    query_failure_message,
    render_query,
    unreachable_message,
)
from edgewatch.alerts import AlertRecord
from edgewatch.health import DeviceAction
from edgewatch.rows import (
    Heartbeat,
    parse_alert_actions,
    parse_alert_events,
    parse_device_actions,
    parse_heartbeat,
    parse_snapshots,
)
from edgewatch.settings import Settings, load_settings

# The names the pages read as `data.X`: the pure frames, the store and the core's row parsers.
__all__ = [
    "BEGINNING",
    "DEAD_LETTER_LIMIT",
    "DEVICES_MARK",
    "DEVICE_LOOKBACK",
    "FUTURE_SKEW",
    "INGEST_INSTANCE_COLUMNS",
    "INGEST_STATS_MAX_WINDOWS",
    "MAX_SERIES_DEVICES",
    "METRIC_LOOKBACK_1H",
    "NS_PER_SECOND",
    "QUERIES_DIR",
    "SERIES_STATS",
    "CachedData",
    "Connection",
    "FleetStore",
    "FleetView",
    "Heartbeat",
    "Row",
    "StoreUnavailableError",
    "alerts_frame",
    "bool_window_rows",
    "cache_ttl_seconds",
    "cached_data",
    "check_keys",
    "check_metric",
    "counter_rates",
    "device_filter",
    "fleet_frame",
    "get_client",
    "ingest_instances",
    "ingest_stats_window",
    "load_alerts",
    "load_audit_rows",
    "load_device_actions",
    "load_fleet",
    "load_fleet_with_frame",
    "load_ingest",
    "load_metric_names",
    "load_query",
    "load_recent_metrics",
    "load_series",
    "load_status_history",
    "parse_alert_actions",
    "parse_alert_events",
    "parse_device_actions",
    "parse_heartbeat",
    "parse_series",
    "parse_snapshots",
    "per_instance",
    "query_failure_message",
    "record_action",
    "record_device_action",
    "render_query",
    "site_frame",
    "store_for",
    "unreachable_message",
]

P = ParamSpec("P")
R = TypeVar("R")


def cache_ttl_seconds() -> float:
    """How long cached data lives: never longer than the refresh interval the pages promise.

    Read when asked, so importing this module reads no settings. Invalid settings are reported
    by the page that loads them (`ui.context`), before any cached read runs; here they fall
    back to the default interval.
    """
    try:
        return max(1.0, load_settings().dashboard_refresh_seconds)
    except ValidationError:
        default = Settings.model_fields["dashboard_refresh_seconds"].default
        return max(1.0, float(default))


class CachedData(Generic[P, R]):
    """`st.cache_data` over `function`, made on the first call (when the TTL is read)."""

    def __init__(self, function: Callable[P, R]) -> None:
        self._function = function
        self._lock = threading.Lock()
        self._cached: Callable[P, R] | None = None
        functools.update_wrapper(self, function)

    def _get(self) -> Callable[P, R]:
        with self._lock:
            if self._cached is None:
                self._cached = st.cache_data(ttl=cache_ttl_seconds(), show_spinner=False)(
                    self._function
                )
            return self._cached

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._get()(*args, **kwargs)

    def clear(self) -> None:
        """Drop every cached answer of this function."""
        cached = self._get()
        cached.clear()  # type: ignore[attr-defined]


def cached_data(function: Callable[P, R]) -> CachedData[P, R]:
    """Decorator: a cached entry point whose TTL is the refresh interval, read when first called."""
    return CachedData(function)


# ------------------------------------------------------------------- cached entry points


@st.cache_resource(show_spinner=False)
def get_client(url: str, token: str, org: str, timeout_s: float) -> InfluxDBClient:
    """The one InfluxDB client per connection, shared by all sessions."""
    return InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000))


def store_for(connection: Connection) -> FleetStore:
    client = get_client(connection.url, connection.token, connection.org, connection.timeout_s)
    return FleetStore(client=client, connection=connection)


@cached_data
def _load_fleet_cached(connection: Connection) -> tuple[FleetView, pd.DataFrame]:
    # The frame is built here, once per refresh interval for every tab: at 10,000 devices it
    # costs more than reading it back from the cache, and each tab would build it again.
    view = store_for(connection).fleet(time.time_ns())
    return view, fleet_frame(view)


_FLEET_IN_FLIGHT: dict[Connection, threading.Lock] = {}
_FLEET_IN_FLIGHT_GUARD = threading.Lock()


def load_fleet_with_frame(connection: Connection) -> tuple[FleetView, pd.DataFrame]:
    """The fleet view and its one-row-per-device frame (`fleet_frame`), with at most one
    fleet query in flight per connection in this process.

    Every open tab's live fragment refreshes on its own timer: without the lock, a refresh
    whose previous query is still running would start another, and N tabs N at once. A caller
    that finds a query in flight waits for it and then reads its answer from the cache.
    """
    with _FLEET_IN_FLIGHT_GUARD:
        lock = _FLEET_IN_FLIGHT.setdefault(connection, threading.Lock())
    with lock:
        return _load_fleet_cached(connection)


def load_fleet(connection: Connection) -> FleetView:
    """The fleet view alone (see `load_fleet_with_frame`)."""
    return load_fleet_with_frame(connection)[0]


@cached_data
def load_alerts(connection: Connection, lookback_days: int) -> tuple[int, list[AlertRecord]]:
    """(now_ns, records) over the lookback: the fold needs every event and action in it."""
    now_ns = time.time_ns()
    now = datetime.fromtimestamp(now_ns / NS_PER_SECOND, tz=UTC)
    window = TimeRange(start=now - timedelta(days=lookback_days), stop=now + timedelta(minutes=5))
    return now_ns, store_for(connection).alert_records(window)


@cached_data
def load_metric_names(connection: Connection, keys: tuple[tuple[str, str], ...]) -> list[str]:
    return store_for(connection).metric_names(keys, datetime.now(tz=UTC))


@cached_data
def load_series(
    connection: Connection,
    keys: tuple[tuple[str, str], ...],
    metric: str,
    time_range: TimeRange,
    plan: QueryPlan,
) -> pd.DataFrame:
    return store_for(connection).series(keys, metric, time_range, plan)


@cached_data
def load_status_history(
    connection: Connection, site: str, device: str, time_range: TimeRange
) -> pd.DataFrame:
    return store_for(connection).status_history(site, device, time_range)


@cached_data
def load_recent_metrics(connection: Connection, site: str, device: str) -> pd.DataFrame:
    return store_for(connection).recent_metrics(site, device, datetime.now(tz=UTC))


@cached_data
def load_ingest(
    connection: Connection, time_range: TimeRange
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """(self-metrics, newest dead letters, dead letters per code) over the range."""
    store = store_for(connection)
    return (
        store.ingest_stats(time_range),
        store.dead_letters(time_range),
        store.dead_letter_counts(time_range),
    )


@cached_data
def load_device_actions(connection: Connection) -> list[DeviceAction]:
    return store_for(connection).device_actions(datetime.now(tz=UTC))


def record_device_action(
    connection: Connection, *, user: User, site: str, device: str, action: str, note: str = ""
) -> None:
    """Store a retire or reinstate and drop the cached fleet, so every page shows it at once."""
    store_for(connection).record_device_action(
        user=user, site=site, device=device, action=action, note=note
    )
    _load_fleet_cached.clear()
    load_device_actions.clear()


def record_action(
    connection: Connection,
    *,
    user: User,
    alert: AlertRecord,
    action: str,
    note: str = "",
    snooze_until_ns: int = 0,
) -> None:
    """Store an action and drop the cached alerts, so the page shows its effect at once."""
    store_for(connection).record_action(
        user=user, alert=alert, action=action, note=note, snooze_until_ns=snooze_until_ns
    )
    load_alerts.clear()


def load_audit_rows(connection: Connection, time_range: TimeRange) -> list[dict[str, Any]]:
    """Not cached: an export must hold every action stored up to the moment it is made."""
    return store_for(connection).audit_rows(time_range)
