"""dashboard room, pure layer: what the pages show, built from rows the store read.

Value in, value out: the connection and result types, the row-to-frame builders and the checks
a query's arguments pass before they reach InfluxDB. No I/O, no Streamlit, no influxdb-client
(the unit tests import this module alone); the store (`dashboard.store`) and the cached entry
points (`dashboard.data`) build on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from dashboard.ranges import Source, TimeRange
from edgewatch.alerts import AlertRecord
from edgewatch.contract import is_valid_metric_name, is_valid_name
from edgewatch.health import (
    DeviceAction,
    DeviceHealth,
    HealthState,
    worst_state,
)
from edgewatch.rows import DeviceInfo, Heartbeat
from edgewatch.rows import as_float as _float
from edgewatch.settings import Settings

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
