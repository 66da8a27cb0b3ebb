"""dashboard room: the only module that talks to InfluxDB.

Reads run the parameterised Flux files in `dashboard/queries/` (user input only ever reaches a
query as a Flux parameter, never as query text) and return pandas frames or the core's
dataclasses; the writes are operators' actions (on alerts, and retiring devices) into the ops
bucket. The fleet, device inventory and alerts are read from the state bucket, which outlives
raw retention (docs/architecture.md). `FleetStore`
takes its client, so tests use it directly; the `load_*` functions below are the cached
entry points the pages call (`st.cache_data`, keyed on their arguments; filters are applied
by the pages, outside the cache). The client itself is the one `st.cache_resource`.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision

from dashboard.auth import User, require_operator
from dashboard.ranges import QueryPlan, Source, TimeRange
from edgewatch.alerts import (
    AlertRecord,
    fold_alerts,
    validate_action,
)
from edgewatch.contract import is_valid_metric_name, is_valid_name
from edgewatch.health import (
    DeviceAction,
    DeviceHealth,
    HealthState,
    fleet_health,
    last_heard_ns,
    retired_devices,
    validate_device_action,
    worst_state,
)
from edgewatch.rows import (
    DeviceInfo,
    Heartbeat,
    parse_alert_actions,
    parse_alert_events,
    parse_device_actions,
    parse_heartbeat,
    parse_snapshots,
)
from edgewatch.rows import as_float as _float
from edgewatch.rows import time_ns as _ns
from edgewatch.schema import alert_action_line, device_action_line
from edgewatch.settings import Settings, load_settings

logger = logging.getLogger(__name__)

QUERIES_DIR = Path(__file__).parent / "queries"
# Raw data is kept 30 days: raw reads (recent metrics, heartbeat) look back no further. The
# fleet, inventory and alerts come from the state bucket, read from its beginning.
DEVICE_LOOKBACK = timedelta(days=30)
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
# Alert events may carry a device's clock up to 5 minutes ahead (the contract's limit).
FUTURE_SKEW = timedelta(minutes=5)
METRIC_LOOKBACK_1H = timedelta(days=400)
DEAD_LETTER_LIMIT = 50
# The most devices one trend query selects (the trends page lets people pick as many): each is
# one predicate in the query text, and InfluxDB reads exactly their series.
MAX_SERIES_DEVICES = 20
# Where a query file takes the device predicate built by `device_filter`.
DEVICES_MARK = "${devices}"
NS_PER_SECOND = 1_000_000_000
Row = Mapping[str, Any]


def _refresh_ttl_seconds() -> float:
    # Cached data must never be older than the refresh interval the pages promise.
    try:
        return max(1.0, load_settings().dashboard_refresh_seconds)
    except Exception:  # a bad setting is reported by the page that loads settings
        return 10.0


CACHE_TTL_SECONDS = _refresh_ttl_seconds()


class StoreUnavailableError(RuntimeError):
    """InfluxDB cannot be reached or refused us; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Connection:
    """Where and how to reach InfluxDB: hashable, so it can key the caches."""

    url: str
    org: str
    token: str
    bucket: str
    bucket_1m: str
    bucket_1h: str
    bucket_ops: str
    timeout_s: float
    ingest_interval_s: float
    bucket_state: str = "edgewatch_state"

    @classmethod
    def from_settings(cls, settings: Settings) -> Connection:
        """The dashboard token if set (least privilege), else the general one."""
        secret = settings.dashboard_token or settings.influxdb_token
        return cls(
            url=settings.influxdb_url,
            org=settings.influxdb_org,
            token=secret.get_secret_value() if secret is not None else "",
            bucket=settings.influxdb_bucket,
            bucket_1m=settings.influxdb_bucket_1m,
            bucket_1h=settings.influxdb_bucket_1h,
            bucket_ops=settings.influxdb_bucket_ops,
            timeout_s=settings.influxdb_timeout_seconds,
            ingest_interval_s=settings.ingest_stats_interval_seconds,
            bucket_state=settings.influxdb_bucket_state,
        )

    def bucket_for(self, source: Source) -> str:
        return {
            Source.RAW: self.bucket,
            Source.ROLLUP_1M: self.bucket_1m,
            Source.ROLLUP_1H: self.bucket_1h,
        }[source]


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True, slots=True)
class FleetView:
    """The fleet at `now_ns`: each device's health, what it reported, the ingest heartbeat."""

    now_ns: int
    health: tuple[DeviceHealth, ...]
    info: Mapping[tuple[str, str], DeviceInfo] = field(default_factory=dict)
    heartbeat: Heartbeat = field(default_factory=lambda: Heartbeat(None, 5.0))
    # Devices an operator retired (and not heard from since), with the action that holds.
    retired: Mapping[tuple[str, str], DeviceAction] = field(default_factory=dict)

    @property
    def ingest_silent(self) -> bool:
        return bool(self.health) and all(h.state == "UNKNOWN" for h in self.health)


# ------------------------------------------------------------------ pure parsing helpers
# The rows the fleet and the alerts share with the alerter are parsed in `edgewatch.rows`.


SERIES_STATS: tuple[str, ...] = ("mean", "min", "max")


def parse_series(rows: Iterable[Row]) -> pd.DataFrame:
    """Series rows into one row per device and window, with mean, min and max.

    A row is either one window already (`mean`, `min`, `max` columns: what the series queries
    return) or one stat of a window (`stat`, `_value`); for a stat given twice the first
    value counts, and a window without any value is left out.
    """
    windows: dict[tuple[str, str, Any], dict[str, float]] = {}
    for row in rows:
        stats = windows.setdefault((str(row["site"]), str(row["device"]), row["_time"]), {})
        given = (
            {str(row["stat"]): row.get("_value")}
            if "stat" in row
            else {stat: row.get(stat) for stat in SERIES_STATS}
        )
        for stat, raw in given.items():
            value = _float(raw)
            if stat in SERIES_STATS and value is not None and stat not in stats:
                stats[stat] = value
    columns = ["time", "site", "device", *SERIES_STATS]
    kept = [(key, stats) for key, stats in windows.items() if stats]
    if not kept:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime([key[2] for key, _ in kept], utc=True),
            "site": [key[0] for key, _ in kept],
            "device": [key[1] for key, _ in kept],
            **{stat: [stats.get(stat, float("nan")) for _, stats in kept] for stat in SERIES_STATS},
        },
        columns=columns,
    )
    return frame.sort_values(["site", "device", "time"]).reset_index(drop=True)


def counter_rates(stats: pd.DataFrame, counters: Sequence[str]) -> pd.DataFrame:
    """Per-second rates from counters-since-start, per ingest instance.

    A counter that went down means the instance restarted: that interval's delta is the new
    value itself (counted from zero), never a negative rate.
    """
    out_columns = ["time", *counters]
    if stats.empty:
        return pd.DataFrame(columns=out_columns)
    parts = []
    for _, part in stats.sort_values("time").groupby("instance", sort=False):
        seconds = part["time"].diff().dt.total_seconds()
        rates = pd.DataFrame({"time": part["time"]})
        for counter in counters:
            if counter not in part:
                rates[counter] = float("nan")
                continue
            values = pd.to_numeric(part[counter], errors="coerce")
            delta = values.diff()
            delta = delta.where(delta >= 0, values)
            rates[counter] = delta / seconds
        parts.append(rates.iloc[1:])
    if not parts:
        return pd.DataFrame(columns=out_columns)
    merged = pd.concat(parts)
    # Several instances: the fleet's rate is their sum per report time.
    return merged.groupby("time", as_index=False)[list(counters)].sum(min_count=1)


INGEST_STATS_MAX_WINDOWS = 360
INGEST_INSTANCE_COLUMNS = (
    "queue_depth",
    "lag_ms",
    "journal_entries",
    "journal_bytes",
    "journal_fill",
    "journal_oldest_age_s",
)


def ingest_stats_window(time_range: TimeRange, report_interval_s: float) -> timedelta:
    """The window that aligns the instances' reports: at least two report intervals (so each
    instance has a report in every window), and at most `INGEST_STATS_MAX_WINDOWS` windows."""
    span_s = (time_range.stop - time_range.start).total_seconds()
    seconds = max(2.0 * report_interval_s, span_s / INGEST_STATS_MAX_WINDOWS, 1.0)
    return timedelta(seconds=math.ceil(seconds))


def per_instance(stats: pd.DataFrame, column: str) -> pd.DataFrame:
    """One column per ingest instance of `column` over `time` (for a chart of replicas)."""
    if stats.empty or column not in stats or "instance" not in stats:
        return pd.DataFrame(columns=["time"])
    wide = stats.pivot_table(index="time", columns="instance", values=column, aggfunc="last")
    wide.columns = [str(c) for c in wide.columns]
    return wide.reset_index()


def ingest_instances(stats: pd.DataFrame) -> pd.DataFrame:
    """Each instance's newest report: when, queue depth, lag and journal fill."""
    columns = ["instance", "as of", *INGEST_INSTANCE_COLUMNS]
    if stats.empty or "instance" not in stats:
        return pd.DataFrame(columns=columns)
    latest = stats.sort_values("time").groupby("instance", as_index=False).last()
    latest = latest.rename(columns={"time": "as of"})
    for column in INGEST_INSTANCE_COLUMNS:
        if column not in latest:
            latest[column] = float("nan")
    return latest[columns].sort_values("instance").reset_index(drop=True)


def fleet_frame(view: FleetView) -> pd.DataFrame:
    """One row per device: site, device, state, reason, since, last seen and what it runs."""
    rows = []
    for h in view.health:
        info = view.info.get((h.site, h.device), DeviceInfo())
        retired = view.retired.get((h.site, h.device))
        rows.append(
            {
                "site": h.site,
                "device": h.device,
                "state": str(h.state),
                "reason": h.reason,
                "since": _ts(h.since_ns),
                "last_seen": _ts(h.last_seen_ns),
                "model": info.model,
                "model_version": info.model_version,
                "firmware": info.firmware,
                "lat": info.lat,
                "lon": info.lon,
                "retired": retired is not None,
                "retired_by": retired.user if retired is not None else None,
                "retired_at": _ts(retired.ts_ns) if retired is not None else None,
            }
        )
    columns = [
        "site",
        "device",
        "state",
        "reason",
        "since",
        "last_seen",
        "model",
        "model_version",
        "firmware",
        "lat",
        "lon",
        "retired",
        "retired_by",
        "retired_at",
    ]
    return pd.DataFrame(rows, columns=columns)


def site_frame(devices: pd.DataFrame) -> pd.DataFrame:
    """One row per site: the worst state of its devices, counts per state, mean coordinates."""
    columns = ["site", "state", "devices", "ONLINE", "STALE", "OFFLINE", "UNKNOWN", "lat", "lon"]
    if devices.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for site, part in devices.groupby("site", sort=True):
        states = list(part["state"])
        row: dict[str, Any] = {
            "site": site,
            "state": str(worst_state([HealthState(s) for s in states])),
            "devices": len(part),
        }
        for state in ("ONLINE", "STALE", "OFFLINE", "UNKNOWN"):
            row[state] = states.count(state)
        row["lat"] = pd.to_numeric(part["lat"], errors="coerce").mean()
        row["lon"] = pd.to_numeric(part["lon"], errors="coerce").mean()
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def alerts_frame(records: Sequence[AlertRecord], now_ns: int) -> pd.DataFrame:
    """One row per alert record, with its review state at `now_ns`."""
    rows = [
        {
            "alert_id": r.alert_id,
            "severity": r.severity,
            "state": str(r.state_at(now_ns)),
            "site": r.site,
            "device": r.device,
            "type": r.type,
            "message": r.message,
            "count": r.count,
            "last_value": r.last_value,
            "opened": _ts(r.opened_ns),
            "last": _ts(r.last_ns),
            "acknowledged_by": r.acknowledged_by,
            "snoozed_until": _ts(r.snoozed_until_ns),
            "closed_by": r.closed_by,
        }
        for r in records
    ]
    columns = [
        "alert_id",
        "severity",
        "state",
        "site",
        "device",
        "type",
        "message",
        "count",
        "last_value",
        "opened",
        "last",
        "acknowledged_by",
        "snoozed_until",
        "closed_by",
    ]
    return pd.DataFrame(rows, columns=columns)


def _ts(ns: int | None) -> pd.Timestamp | None:
    return None if ns is None else pd.Timestamp(ns, unit="ns", tz="UTC")


def check_keys(keys: Iterable[tuple[str, str]]) -> list[str]:
    """Allow-list site and device names (the contract's pattern); "site/device" for Flux."""
    out = []
    for site, device in keys:
        if not is_valid_name(site) or not is_valid_name(device):
            raise ValueError(f"not a valid site/device name: {site!r}/{device!r}")
        out.append(f"{site}/{device}")
    return out


def device_filter(keys: Iterable[tuple[str, str]]) -> tuple[str, dict[str, str]]:
    """The Flux predicate selecting these devices, and the parameters it reads.

    The predicate is `(r.site == _s0 and r.device == _d0) or ...`: tag equalities, which
    InfluxDB pushes down to the storage engine, so only the selected devices' series are read.
    Its text is made from our own parameter names and the number of devices only; the names
    themselves go in the parameters (`s0`, `d0`, ...; `FleetStore._query` adds the "_"),
    checked against the contract's pattern. At most `MAX_SERIES_DEVICES` devices.
    """
    unique = list(dict.fromkeys((str(site), str(device)) for site, device in keys))
    if not unique:
        raise ValueError("select at least one device")
    if len(unique) > MAX_SERIES_DEVICES:
        raise ValueError(
            f"at most {MAX_SERIES_DEVICES} devices can be queried at once, not {len(unique)}"
        )
    check_keys(unique)
    predicate = " or ".join(f"(r.site == _s{i} and r.device == _d{i})" for i in range(len(unique)))
    params: dict[str, str] = {}
    for i, (site, device) in enumerate(unique):
        params[f"s{i}"] = site
        params[f"d{i}"] = device
    return predicate, params


def bool_window_rows(rows: Iterable[Row]) -> list[Row]:
    """Windows with mean, min and max from the per-window means of a 0/1 metric.

    series_raw_bool.flux returns only the mean (the share of true readings); for values that
    are only 0 or 1, the min is 1 exactly when every reading was 1 (mean 1) and the max is 1
    when any reading was (mean above 0).
    """
    out: list[Row] = []
    for row in rows:
        mean = _float(row.get("_value"))
        if mean is None:
            continue
        out.append(
            {
                "_time": row["_time"],
                "site": row["site"],
                "device": row["device"],
                "mean": mean,
                "min": 1.0 if mean >= 1.0 else 0.0,
                "max": 1.0 if mean > 0.0 else 0.0,
            }
        )
    return out


def check_metric(metric: str) -> str:
    if not is_valid_metric_name(metric):
        raise ValueError(f"not a valid metric name: {metric!r}")
    return metric


# ------------------------------------------------------------------------------ the store


@functools.cache
def load_query(name: str) -> str:
    """The text of `queries/<name>.flux` (fixed text: only parameters vary)."""
    return (QUERIES_DIR / f"{name}.flux").read_text(encoding="utf-8")


def render_query(name: str, devices: str | None = None) -> str:
    """A query's text, with `device_filter`'s predicate in place of `${devices}` if it has one.

    The predicate only ever names parameters (`_s0`, `_d0`, ...): no value reaches the text.
    """
    text = load_query(name)
    if DEVICES_MARK not in text:
        if devices is not None:
            raise ValueError(f"query {name} takes no device predicate")
        return text
    if devices is None:
        raise ValueError(f"query {name} needs a device predicate (device_filter)")
    return text.replace(DEVICES_MARK, devices)


def _is_timeout(error: BaseException) -> bool:
    """A read that ran past the client's timeout (urllib3 wraps it; walk the chain)."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, TimeoutError) or "timed out" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def query_failure_message(
    view: str, url: str, timeout_s: float, error: BaseException
) -> str | None:
    """What to say when InfluxDB answers but a query of `view` fails; None if it did not answer.

    A query past the dashboard's timeout, or past InfluxDB's query limits (memory, queue),
    is not an unreachable server: the page names the view, the limit and what to do.
    """
    text = str(getattr(error, "body", "") or "") + " " + str(error)
    lowered = text.lower()
    if _is_timeout(error):
        return (
            f"The {view} query ran past {timeout_s:g} s and was abandoned (InfluxDB at {url} "
            "answers). Narrow the view (fewer devices, a shorter range), or raise "
            "INFLUXDB_TIMEOUT_SECONDS; the next refresh tries again."
        )
    if "memory" in lowered and ("limit" in lowered or "allocat" in lowered):
        return (
            f"The {view} query needed more memory than InfluxDB at {url} allows one query "
            "(influxd --query-memory-bytes) and was stopped. Narrow the view (fewer devices, "
            "a shorter range)."
        )
    if "queue" in lowered and ("length" in lowered or "full" in lowered):
        return (
            f"InfluxDB at {url} is busy: its query queue is full (influxd --query-queue-size), "
            f"so the {view} query was refused. The next refresh tries again."
        )
    return None


def unreachable_message(url: str, error: BaseException) -> str:
    """What an operator reads when InfluxDB does not answer, with what to do about it."""
    # Only an HTTP answer has a status; a refused connection has none (and its text may well
    # contain "401" as part of a port number).
    status = getattr(error, "status", None)
    text = str(getattr(error, "body", "") or "")
    if status in (401, 403):
        return (
            f"InfluxDB at {url} refused the dashboard's token: set EDGEWATCH_DASHBOARD_TOKEN "
            '(or INFLUXDB_V2_TOKEN), e.g. `eval "$(edgewatch stack env --export)"`.'
        )
    if status == 404 and "bucket" in text.lower():
        return (
            f"InfluxDB at {url} lacks a bucket the dashboard reads: run `edgewatch stack up` "
            "to create the buckets, or check INFLUXDB_V2_BUCKET and EDGEWATCH_BUCKET_*."
        )
    return f"InfluxDB at {url} cannot be reached: start it with `edgewatch stack up`."


class FleetStore:
    """Reads the fleet from InfluxDB and records operators' alert actions."""

    def __init__(self, *, client: InfluxDBClient, connection: Connection) -> None:
        self._client = client
        self._conn = connection

    @property
    def connection(self) -> Connection:
        return self._conn

    def _query(
        self, name: str, params: Mapping[str, Any], *, devices: str | None = None
    ) -> list[dict[str, Any]]:
        return self._run(name, render_query(name, devices), params)

    def _run(self, name: str, text: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        try:
            tables = self._client.query_api().query(
                text,
                org=self._conn.org,
                # influxdb-client sends each parameter as a Flux option; the "_" keeps their
                # names clear of Flux's own (`limit`, `start`...).
                params={f"_{key}": value for key, value in params.items()},
            )
        except Exception as exc:
            # Any failure here is the store's, not the page's: say so once, in words.
            logger.warning("query %s failed against %s: %s", name, self._conn.url, exc)
            message = query_failure_message(name, self._conn.url, self._conn.timeout_s, exc)
            raise StoreUnavailableError(
                message or unreachable_message(self._conn.url, exc)
            ) from exc
        return [dict(record.values) for table in tables for record in table.records]

    def query(
        self, name: str, params: Mapping[str, Any], *, devices: str | None = None
    ) -> list[dict[str, Any]]:
        """Run `queries/<name>.flux` with `params` (for the other stores of this room)."""
        return self._query(name, params, devices=devices)

    def write_ops(self, record: str, what: str) -> None:
        """Store one operator action line in the ops bucket."""
        self._write_ops(record, what)

    # -- fleet

    def heartbeat(self, now: datetime) -> Heartbeat:
        rows = self._query(
            "ingest_heartbeat", {"bucket": self._conn.bucket, "start": now - DEVICE_LOOKBACK}
        )
        return parse_heartbeat(rows, self._conn.ingest_interval_s)

    def fleet(self, now_ns: int) -> FleetView:
        """Every device the state bucket knows, however long silent, with its health."""
        now = datetime.fromtimestamp(now_ns / NS_PER_SECOND, tz=UTC)
        params = {"bucket": self._conn.bucket_state, "start": BEGINNING, "stop": now + FUTURE_SKEW}
        status_rows = self._query("state_device_status", params)
        seen_rows = self._query("state_last_seen", params)
        snapshots, info = parse_snapshots(status_rows, seen_rows)
        beat = self.heartbeat(now)
        health = fleet_health(
            snapshots,
            now_ns,
            ingest_last_report_ns=beat.last_ns,
            ingest_report_interval_s=beat.interval_s,
        )
        retired = retired_devices(
            self.device_actions(now), {(s.site, s.device): last_heard_ns(s) for s in snapshots}
        )
        return FleetView(
            now_ns=now_ns, health=tuple(health), info=info, heartbeat=beat, retired=retired
        )

    def device_actions(self, now: datetime) -> list[DeviceAction]:
        """Every retire and reinstate ever recorded, oldest first (operators' own, few)."""
        rows = self._query(
            "device_actions",
            {"bucket": self._conn.bucket_ops, "start": BEGINNING, "stop": now + FUTURE_SKEW},
        )
        return parse_device_actions(rows)

    def record_device_action(
        self,
        *,
        user: User,
        site: str,
        device: str,
        action: str,
        note: str = "",
        now_ns: int | None = None,
    ) -> None:
        """Retire or reinstate a device (`device_action` in the ops bucket), who, when, note."""
        # Checked here as well as in the page: a viewer must not act, whatever the UI shows.
        require_operator(user)
        validate_device_action(action, note, user.name)
        check_keys([(site, device)])
        record = device_action_line(
            site=site,
            device=device,
            action=action,
            user=user.name,
            note=note,
            ts_ns=now_ns if now_ns is not None else time.time_ns(),
        )
        self._write_ops(record, f"device action {action} on {site}/{device}")
        logger.info("device %s/%s: %s by %s", site, device, action, user.name)

    def _write_ops(self, record: str, what: str) -> None:
        try:
            with self._client.write_api(write_options=SYNCHRONOUS) as writer:
                writer.write(
                    bucket=self._conn.bucket_ops,
                    org=self._conn.org,
                    record=record,
                    write_precision=WritePrecision.NS,
                )
        except Exception as exc:
            logger.warning("%s not stored: %s", what, exc)
            raise StoreUnavailableError(unreachable_message(self._conn.url, exc)) from exc

    # -- alerts

    def alert_records(self, time_range: TimeRange) -> list[AlertRecord]:
        """Open alerts, whenever opened, and the alerts closed within the range.

        The fold reads every stored event and action up to the range's end (the state
        bucket keeps them forever): an alert's id comes from its opening raise, and that must
        not depend on where a window happens to start.
        """
        params = {"start": BEGINNING, "stop": time_range.stop}
        events = parse_alert_events(
            self._query("alert_events", {**params, "bucket": self._conn.bucket_state})
        )
        actions = parse_alert_actions(
            self._query("alert_actions", {**params, "bucket": self._conn.bucket_ops})
        )
        start_ns = _ns(time_range.start)
        return [
            r
            for r in fold_alerts(events, actions)
            if r.is_open or max(r.last_ns, r.closed_ns or 0) >= start_ns
        ]

    def record_action(
        self,
        *,
        user: User,
        alert: AlertRecord,
        action: str,
        note: str = "",
        snooze_until_ns: int = 0,
        now_ns: int | None = None,
    ) -> None:
        """Store one operator action (`alert_action` in the ops bucket) with who, when, note."""
        # Checked here as well as in the page: a viewer must not act, whatever the UI shows.
        require_operator(user)
        validate_action(action, note, user.name)
        if snooze_until_ns < 0:
            raise ValueError("snooze_until_ns must not be negative")
        record = alert_action_line(
            site=alert.site,
            device=alert.device,
            alert_type=alert.type,
            alert_id=alert.alert_id,
            action=action,
            user=user.name,
            note=note,
            snooze_until_ns=snooze_until_ns,
            ts_ns=now_ns if now_ns is not None else time.time_ns(),
        )
        self._write_ops(record, f"alert action {action} on {alert.alert_id}")
        logger.info("alert %s: %s by %s", alert.alert_id, action, user.name)

    # -- trends

    def metric_names(self, keys: Sequence[tuple[str, str]], now: datetime) -> list[str]:
        if not keys:
            return []
        predicate, device_params = device_filter(keys)
        rows = self._query(
            "metric_names",
            {
                "bucket": self._conn.bucket,
                "bucket_1h": self._conn.bucket_1h,
                "start": now - DEVICE_LOOKBACK,
                "start_1h": now - METRIC_LOOKBACK_1H,
                **device_params,
            },
            devices=predicate,
        )
        return sorted({str(r["_value"]) for r in rows if is_valid_metric_name(str(r["_value"]))})

    def series(
        self,
        keys: Sequence[tuple[str, str]],
        metric: str,
        time_range: TimeRange,
        plan: QueryPlan,
    ) -> pd.DataFrame:
        """Mean/min/max per window of one metric for several devices (at most 20).

        Rollups are floats: one query, aggregated in the storage engine. Raw data may hold a
        boolean metric, which the storage engine cannot aggregate: a first, cheap query reads
        the newest value of the metric per device (which devices have data, and its type),
        then numbers go through the pushed-down series_raw and booleans through
        series_raw_bool (as 0/1).
        """
        if not keys:
            return parse_series([])
        predicate, device_params = device_filter(keys)
        params = {
            "bucket": self._conn.bucket_for(plan.source),
            "start": time_range.start,
            "stop": time_range.stop,
            "every": plan.window,
            "metric": check_metric(metric),
        }
        if plan.source != Source.RAW:
            return parse_series(
                self._query("series_rollup", {**params, **device_params}, devices=predicate)
            )
        newest = self._query(
            "series_raw_last",
            {key: params[key] for key in ("bucket", "start", "stop", "metric")} | device_params,
            devices=predicate,
        )
        numeric: list[tuple[str, str]] = []
        flags: list[tuple[str, str]] = []
        for row in newest:
            key = (str(row["site"]), str(row["device"]))
            (flags if isinstance(row["_value"], bool) else numeric).append(key)
        rows: list[Row] = []
        if numeric:
            text, values = device_filter(numeric)
            rows += self._query("series_raw", {**params, **values}, devices=text)
        if flags:
            text, values = device_filter(flags)
            rows += bool_window_rows(
                self._query("series_raw_bool", {**params, **values}, devices=text)
            )
        return parse_series(rows)

    # -- one device

    def status_history(self, site: str, device: str, time_range: TimeRange) -> pd.DataFrame:
        check_keys([(site, device)])
        rows = self._query(
            "device_status_history",
            {
                "bucket": self._conn.bucket_state,
                "start": time_range.start,
                "stop": time_range.stop,
                "site": site,
                "device": device,
            },
        )
        return pd.DataFrame(
            [
                {
                    "time": pd.Timestamp(r["_time"]),
                    "state": r.get("state"),
                    "reason": r.get("reason") or "",
                }
                for r in rows
            ],
            columns=["time", "state", "reason"],
        )

    def recent_metrics(self, site: str, device: str, now: datetime) -> pd.DataFrame:
        check_keys([(site, device)])
        rows = self._query(
            "device_recent_metrics",
            {
                "bucket": self._conn.bucket,
                "start": now - DEVICE_LOOKBACK,
                "site": site,
                "device": device,
            },
        )
        frame = pd.DataFrame(
            [
                {"metric": r["_field"], "value": r["_value"], "time": pd.Timestamp(r["_time"])}
                for r in rows
            ],
            columns=["metric", "value", "time"],
        )
        return frame.sort_values("metric").reset_index(drop=True)

    # -- ingest

    def ingest_stats(self, time_range: TimeRange) -> pd.DataFrame:
        """Each instance's last report per window (windows shared by all instances)."""
        every = ingest_stats_window(time_range, self._conn.ingest_interval_s)
        rows = self._query(
            "ingest_stats",
            {
                "bucket": self._conn.bucket,
                "start": time_range.start,
                "stop": time_range.stop,
                "every": every,
            },
        )
        frame = pd.DataFrame(rows)
        if frame.empty:
            return pd.DataFrame(columns=["time", "instance"])
        frame = frame.rename(columns={"_time": "time"})
        frame["time"] = pd.to_datetime(frame["time"], utc=True)
        keep = [c for c in frame.columns if c not in ("result", "table")]
        return frame[keep].sort_values("time").reset_index(drop=True)

    def dead_letters(self, time_range: TimeRange, limit: int = DEAD_LETTER_LIMIT) -> pd.DataFrame:
        rows = self._query(
            "dead_letters",
            {
                "bucket": self._conn.bucket,
                "start": time_range.start,
                "stop": time_range.stop,
                "limit": int(limit),
            },
        )
        return pd.DataFrame(
            [
                {
                    "time": pd.Timestamp(r["_time"]),
                    "code": r.get("code"),
                    "topic": r.get("topic"),
                    "reason": r.get("reason"),
                    "payload": r.get("payload"),
                }
                for r in rows
            ],
            columns=["time", "code", "topic", "reason", "payload"],
        )

    def dead_letter_counts(self, time_range: TimeRange) -> dict[str, int]:
        rows = self._query(
            "dead_letter_counts",
            {"bucket": self._conn.bucket, "start": time_range.start, "stop": time_range.stop},
        )
        counts: dict[str, int] = {}
        for row in rows:
            code = str(row.get("code"))
            counts[code] = counts.get(code, 0) + int(row["_value"])
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    # -- audit

    def audit_rows(self, time_range: TimeRange) -> list[dict[str, Any]]:
        """Every operator action in the ops bucket over the range (see dashboard/audit.py)."""
        return self._query(
            "audit_trail",
            {"bucket": self._conn.bucket_ops, "start": time_range.start, "stop": time_range.stop},
        )


# ------------------------------------------------------------------- cached entry points


@st.cache_resource(show_spinner=False)
def get_client(url: str, token: str, org: str, timeout_s: float) -> InfluxDBClient:
    """The one InfluxDB client per connection, shared by all sessions."""
    return InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000))


def store_for(connection: Connection) -> FleetStore:
    client = get_client(connection.url, connection.token, connection.org, connection.timeout_s)
    return FleetStore(client=client, connection=connection)


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def _load_fleet_cached(connection: Connection) -> FleetView:
    return store_for(connection).fleet(time.time_ns())


_FLEET_IN_FLIGHT: dict[Connection, threading.Lock] = {}
_FLEET_IN_FLIGHT_GUARD = threading.Lock()


def load_fleet(connection: Connection) -> FleetView:
    """The fleet view, with at most one fleet query in flight per connection in this process.

    Every open tab's live fragment refreshes on its own timer: without the lock, a refresh
    whose previous query is still running would start another, and N tabs N at once. A caller
    that finds a query in flight waits for it and then reads its answer from the cache.
    """
    with _FLEET_IN_FLIGHT_GUARD:
        lock = _FLEET_IN_FLIGHT.setdefault(connection, threading.Lock())
    with lock:
        return _load_fleet_cached(connection)


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def load_alerts(connection: Connection, lookback_days: int) -> tuple[int, list[AlertRecord]]:
    """(now_ns, records) over the lookback: the fold needs every event and action in it."""
    now_ns = time.time_ns()
    now = datetime.fromtimestamp(now_ns / NS_PER_SECOND, tz=UTC)
    window = TimeRange(start=now - timedelta(days=lookback_days), stop=now + timedelta(minutes=5))
    return now_ns, store_for(connection).alert_records(window)


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def load_metric_names(connection: Connection, keys: tuple[tuple[str, str], ...]) -> list[str]:
    return store_for(connection).metric_names(keys, datetime.now(tz=UTC))


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def load_series(
    connection: Connection,
    keys: tuple[tuple[str, str], ...],
    metric: str,
    time_range: TimeRange,
    plan: QueryPlan,
) -> pd.DataFrame:
    return store_for(connection).series(keys, metric, time_range, plan)


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def load_status_history(
    connection: Connection, site: str, device: str, time_range: TimeRange
) -> pd.DataFrame:
    return store_for(connection).status_history(site, device, time_range)


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def load_recent_metrics(connection: Connection, site: str, device: str) -> pd.DataFrame:
    return store_for(connection).recent_metrics(site, device, datetime.now(tz=UTC))


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
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


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
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
