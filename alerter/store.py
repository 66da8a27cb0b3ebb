"""alerter room, I/O: everything the alerter reads from and writes to InfluxDB.

Reads the fleet as the dashboard does (statuses and last-seen from the state bucket, from
its beginning, judged on the ingest's receipt times; retirements from the ops bucket; the
ingest heartbeat and readings from raw), the alert events (state bucket) and operators'
actions, and its own state (rule states, delivery log, silences); writes rule alert events
to the state bucket beside the devices' own (`write_alert_events`, its clock as their receipt
time), rule states, evaluation summaries and delivery records to the ops bucket. The rows the
dashboard reads too are parsed by the core (`edgewatch.rows`). Queries are the `.flux` files
next to this module, every value passed as a parameter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision

from alerter.evaluate import (
    DeviceView,
    FleetInput,
    InstanceKey,
    InstanceState,
    RuleAlertEvent,
    RuleState,
)
from alerter.lines import notification_line, rule_alert_line, rule_eval_line, rule_state_line
from alerter.notify import LogRecord, Notification
from edgewatch.alerts import AlertAction, AlertRecord, StoredAlertEvent, fold_alerts
from edgewatch.health import (
    DeviceAction,
    DeviceHealth,
    DeviceSnapshot,
    fleet_health,
    last_heard_ns,
    retired_devices,
)
from edgewatch.labels import Overlay, effective_labels
from edgewatch.model_fleet import (
    drift_results,
    integrity_flags,
    inventory,
    parse_ops,
    shadow_status_rows,
)
from edgewatch.rows import (
    DeviceInfo,
    Heartbeat,
    as_float,
    as_int,
    parse_alert_actions,
    parse_alert_events,
    parse_device_actions,
    parse_heartbeat,
    parse_shadow,
)
from edgewatch.rules import RulesConfig
from edgewatch.settings import Settings
from edgewatch.silences import Silence, fold_silences, in_maintenance, parse_silence_rows
from shared.flux import read_flux
from shared.influxql import InfluxQLClient, read_influxql

logger = logging.getLogger(__name__)

QUERIES_DIR = Path(__file__).parent / "queries"
# Raw data is kept 30 days: the heartbeat read looks back no further. The fleet and the
# alerts come from the state bucket, read from its beginning (as the dashboard reads them).
DEVICE_LOOKBACK = timedelta(days=30)
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
# Alert events may carry a device's clock up to 5 minutes ahead (the contract's limit).
FUTURE_SKEW = timedelta(minutes=5)
# Readings older than this are "no data" for threshold rules, not a current value.
METRIC_LOOKBACK = timedelta(minutes=15)
NS_PER_SECOND = 1_000_000_000
# Below this much time since the fleet's first model status, drift is not judged yet.
MIN_DRIFT_SPAN = timedelta(minutes=1)
Row = dict[str, Any]
# Alert events: a full read of the lookback every this many cycles, increments in between.
FULL_REFRESH_CYCLES = 30
LATE_MARGIN = timedelta(minutes=10)


class StoreUnavailableError(RuntimeError):
    """InfluxDB did not answer (or refused): the alerter cannot read or record anything."""


def _ns(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp()) * NS_PER_SECOND + value.microsecond * 1000
    return int(value)


def _str(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class StoreConfig:
    url: str
    org: str
    token: str
    bucket: str
    bucket_ops: str
    bucket_state: str
    timeout_s: float
    ingest_interval_s: float
    lookback_days: int

    @classmethod
    def from_settings(cls, settings: Settings) -> StoreConfig:
        secret = settings.alerter_token or settings.influxdb_token
        if secret is None:
            raise RuntimeError(
                "no InfluxDB token for the alerter: set EDGEWATCH_ALERTER_TOKEN or "
                'INFLUXDB_V2_TOKEN (e.g. `eval "$(edgewatch stack env --export)"`)'
            )
        return cls(
            url=settings.influxdb_url,
            org=settings.influxdb_org,
            token=secret.get_secret_value(),
            bucket=settings.influxdb_bucket,
            bucket_ops=settings.influxdb_bucket_ops,
            bucket_state=settings.influxdb_bucket_state,
            timeout_s=settings.influxdb_timeout_seconds,
            ingest_interval_s=settings.ingest_stats_interval_seconds,
            lookback_days=settings.alert_lookback_days,
        )

    @property
    def alert_bucket(self) -> str:
        """Where rule alert events go: beside the devices' own, so every page sees them."""
        return self.bucket_state


def parse_rates(
    first_rows: Iterable[Row], last_rows: Iterable[Row]
) -> dict[tuple[str, str], float]:
    """(last - first) / seconds between them, per device with two distinct points."""
    firsts = {}
    for row in first_rows:
        value = as_float(row.get("_value"))
        if value is not None:
            firsts[(str(row["site"]), str(row["device"]))] = (_ns(row["_time"]), value)
    rates = {}
    for row in last_rows:
        key = (str(row["site"]), str(row["device"]))
        value = as_float(row.get("_value"))
        if value is None or key not in firsts:
            continue
        t0, v0 = firsts[key]
        t1 = _ns(row["_time"])
        if t1 > t0:
            rates[key] = (value - v0) / ((t1 - t0) / NS_PER_SECOND)
    return rates


def parse_rule_states(rows: Iterable[Row]) -> dict[InstanceKey, InstanceState]:
    states = {}
    for row in rows:
        try:
            state = RuleState(str(row.get("state")))
        except ValueError:
            continue
        key = InstanceKey(str(row["rule"]), str(row["site"]), str(row["device"]))
        states[key] = InstanceState(
            state, int(row.get("since_ns") or 0), int(row.get("last_true_ns") or 0)
        )
    return states


def parse_log(rows: Iterable[Row]) -> list[LogRecord]:
    return [
        LogRecord(
            key=str(row["key"]),
            ts_ns=int(row["time_ns"]),
            status=_str(row.get("status")),
            attempt=int(row.get("attempt") or 0),
            error=_str(row.get("error")),
            alert_id=_str(row.get("alert_id")),
            site=_str(row.get("site")),
            device=_str(row.get("device")),
            type=_str(row.get("type")),
            severity=_str(row.get("severity")),
            receiver=_str(row.get("receiver")),
            target=int(row.get("target") or 0),
            kind=_str(row.get("kind")),
            title=_str(row.get("title")),
            body=_str(row.get("body")),
            batch=_str(row.get("batch")),
        )
        for row in rows
        if row.get("key")
    ]


def fleet_input(
    snapshots: Sequence[DeviceSnapshot],
    info: Mapping[tuple[str, str], DeviceInfo],
    *,
    heartbeat: Heartbeat,
    actions: Sequence[DeviceAction],
    silences: Sequence[Silence],
    metrics: Mapping[tuple[str, str], Mapping[str, float]],
    rates: Mapping[tuple[str, str, str, float], float],
    now_ns: int,
    label_overlays: Mapping[tuple[str, str], Overlay] | None = None,
) -> FleetInput:
    """The fleet as the rules see it: the dashboard's health, retired devices left out.

    A retired device (retired and not heard from since) is gone, not offline: it raises no
    device_offline and counts in no site. A device in a maintenance window is marked so.
    Labels are the effective ones: status labels with operators' `label_overlays` applied.
    """
    overlays = label_overlays or {}
    retired = retired_devices(actions, {(s.site, s.device): last_heard_ns(s) for s in snapshots})
    kept = [s for s in snapshots if (s.site, s.device) not in retired]
    health: list[DeviceHealth] = fleet_health(
        kept,
        now_ns,
        ingest_last_report_ns=heartbeat.last_ns,
        ingest_report_interval_s=heartbeat.interval_s,
    )
    intervals = {(s.site, s.device): s.interval_s for s in kept}
    labels = {
        (h.site, h.device): effective_labels(
            dict(info[(h.site, h.device)].labels) if (h.site, h.device) in info else {},
            overlays.get((h.site, h.device)),
        )
        for h in health
    }
    devices = tuple(
        DeviceView(
            health=h,
            model=info[(h.site, h.device)].model if (h.site, h.device) in info else None,
            interval_s=intervals.get((h.site, h.device)),
            metrics=metrics.get((h.site, h.device), {}),
            in_maintenance=in_maintenance(
                silences, h.site, h.device, now_ns, labels[(h.site, h.device)]
            ),
            labels=labels[(h.site, h.device)],
        )
        for h in health
    )
    silent = bool(health) and all(h.state == "UNKNOWN" for h in health)
    if not health and heartbeat.last_ns is None:
        silent = True
    return FleetInput(
        devices=devices,
        ingest_silent=silent,
        ingest_reason=health[0].reason if silent and health else "no heartbeat",
        rates=rates,
    )


class AlerterStore:
    """The alerter's reads and writes; every failure becomes StoreUnavailableError."""

    def __init__(self, *, client: InfluxDBClient, config: StoreConfig) -> None:
        self._client = client
        self._config = config
        self._last_stamp_ns = 0
        self._events: dict[tuple[str, str, str, int], StoredAlertEvent] = {}
        self._actions: dict[tuple[str, str, str, int], AlertAction] = {}
        self._last_read: datetime | None = None
        self._reads_since_full = 0
        # The last fleet read's shadow rows: the model rules judge the same fleet in a cycle.
        self._shadow_rows: list[Row] = []
        self._first_model_ns: int | None = None
        self._influxql = InfluxQLClient(
            url=config.url, token=config.token, timeout_s=config.timeout_s
        )

    @property
    def config(self) -> StoreConfig:
        return self._config

    def stamp(self) -> int:
        """Now in ns, strictly increasing: two records of one series never share a time."""
        self._last_stamp_ns = max(time.time_ns(), self._last_stamp_ns + 1)
        return self._last_stamp_ns

    def _query(self, name: str, params: Mapping[str, Any]) -> list[Row]:
        text = read_flux(QUERIES_DIR, name)
        started = time.perf_counter()
        try:
            tables = self._client.query_api().query(
                text, org=self._config.org, params={f"_{k}": v for k, v in params.items()}
            )
            rows = [dict(record.values) for table in tables for record in table.records]
        except Exception as exc:
            raise StoreUnavailableError(f"query {name} failed: {exc}") from exc
        logger.debug(
            "query %s: %d rows in %.0f ms", name, len(rows), (time.perf_counter() - started) * 1000
        )
        return rows

    def _influxql_rows(self, name: str, database: str) -> list[Row]:
        started = time.perf_counter()
        try:
            rows = self._influxql.rows(database, read_influxql(QUERIES_DIR, name))
        except Exception as exc:
            raise StoreUnavailableError(f"query {name} failed: {exc}") from exc
        logger.debug(
            "query %s: %d rows in %.0f ms", name, len(rows), (time.perf_counter() - started) * 1000
        )
        return rows

    def _write(self, bucket: str, lines: Sequence[str]) -> None:
        if not lines:
            return
        try:
            with self._client.write_api(write_options=SYNCHRONOUS) as writer:
                writer.write(
                    bucket=bucket,
                    org=self._config.org,
                    record=list(lines),
                    write_precision=WritePrecision.NS,
                )
        except Exception as exc:
            raise StoreUnavailableError(f"write to {bucket} failed: {exc}") from exc

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except Exception:
            return False

    # -- reads

    def fleet(self, config: RulesConfig, silences: Sequence[Silence], now_ns: int) -> FleetInput:
        now = datetime.fromtimestamp(now_ns / NS_PER_SECOND, tz=UTC)
        snapshots, info, heartbeat, actions = self.fleet_state(now)
        fleet = fleet_input(
            snapshots,
            info,
            heartbeat=heartbeat,
            actions=actions,
            silences=silences,
            metrics=self._metrics(config, now),
            rates=self._rates(config, now),
            now_ns=now_ns,
            label_overlays=self.label_overlays(now),
        )
        builtins = config.builtins
        if not (builtins.model_drift.enabled or builtins.model_integrity.enabled):
            return fleet
        return replace(fleet, **self._model_fleet(config, now))

    def label_overlays(self, now: datetime) -> dict[tuple[str, str], dict[str, str | None]]:
        """Operators' device labels (`label_action`, ops bucket, from its beginning), read with
        the Models page's query."""
        whole = {"start": BEGINNING, "stop": now + FUTURE_SKEW}
        return parse_ops(
            self._query("model_ops_actions", {**whole, "bucket": self._config.bucket_ops})
        ).labels

    def _first_model_status_ns(self) -> int | None:
        """When the fleet's first model status was received: read once, then kept (the
        earliest time of a stored point never changes)."""
        if self._first_model_ns is None:
            rows = self._influxql_rows("first_model_status", self._config.bucket_state)
            self._first_model_ns = as_int(rows[0].get("time")) if rows else None
        return self._first_model_ns

    def _model_fleet(self, config: RulesConfig, now: datetime) -> dict[str, Any]:
        """Drift and integrity as the Models page judges them (the same queries and core
        functions): the window's last third against its first, started no earlier than the
        fleet's first model status; releases and labels from the operators' actions."""
        whole = {"start": BEGINNING, "stop": now + FUTURE_SKEW}
        history = shadow_status_rows(self._shadow_rows)
        ops = parse_ops(
            self._query("model_ops_actions", {**whole, "bucket": self._config.bucket_ops})
        )
        devices = inventory(history, ops)
        hashed = frozenset((d.site, d.device) for d in devices if d.sha256 is not None)
        flags = {(f.site, f.device): f for f in integrity_flags(devices, ops.releases)}
        drift = {}
        first_ns = self._first_model_status_ns() if history else None
        if config.builtins.model_drift.enabled and first_ns is not None:
            first = datetime.fromtimestamp(first_ns / NS_PER_SECOND, tz=UTC)
            start = max(now - timedelta(seconds=config.builtins.model_drift.window_s), first)
            if now - start >= MIN_DRIFT_SPAN:
                third = (now - start) / 3
                rows = self._query(
                    "model_confidence_histogram",
                    {
                        "bucket": self._config.bucket,
                        "start": start,
                        "split1": start + third,
                        "split2": now - third,
                        "stop": now,
                    },
                )
                keys = {(d.site, d.device) for d in devices}
                drift = {(r.site, r.device): r for r in drift_results(rows, keys)}
        return {"drift": drift, "integrity": flags, "hashed": hashed}

    def fleet_state(
        self, now: datetime
    ) -> tuple[
        list[DeviceSnapshot], dict[tuple[str, str], DeviceInfo], Heartbeat, list[DeviceAction]
    ]:
        """The reads the dashboard's fleet load makes too: the device shadow (state bucket),
        the ingest heartbeat (raw), retirements (ops)."""
        whole = {"start": BEGINNING, "stop": now + FUTURE_SKEW}
        self._shadow_rows = self._influxql_rows("device_shadow", self._config.bucket_state)
        snapshots, info = parse_shadow(self._shadow_rows)
        heartbeat = parse_heartbeat(
            self._query(
                "ingest_heartbeat", {"bucket": self._config.bucket, "start": now - DEVICE_LOOKBACK}
            ),
            self._config.ingest_interval_s,
        )
        actions = parse_device_actions(
            self._query("device_actions", {**whole, "bucket": self._config.bucket_ops})
        )
        return snapshots, info, heartbeat, actions

    def _metrics(
        self, config: RulesConfig, now: datetime
    ) -> dict[tuple[str, str], dict[str, float]]:
        """The newest value of each metric a threshold rule watches, per device."""
        metrics: dict[tuple[str, str], dict[str, float]] = {}
        for metric in sorted({r.metric for r in config.rules if r.kind == "threshold"}):
            rows = self._query(
                "metric_last",
                {"bucket": self._config.bucket, "start": now - METRIC_LOOKBACK, "metric": metric},
            )
            for row in rows:
                value = as_float(row.get("_value"))
                if value is not None:
                    key = (str(row["site"]), str(row["device"]))
                    metrics.setdefault(key, {})[str(row["_field"])] = value
        return metrics

    def _rates(
        self, config: RulesConfig, now: datetime
    ) -> dict[tuple[str, str, str, float], float]:
        """The change per second of each (metric, window) a rate rule watches, per device."""
        rates: dict[tuple[str, str, str, float], float] = {}
        for metric, window in sorted(
            {(r.metric, r.window_s) for r in config.rules if r.kind == "rate"}
        ):
            params = {
                "bucket": self._config.bucket,
                "start": now - timedelta(seconds=window),
                "metric": metric,
            }
            rates_now = parse_rates(
                self._query("metric_first", params), self._query("metric_last", params)
            )
            for (site, device), rate in rates_now.items():
                rates[(site, device, metric, window)] = rate
        return rates

    def alert_records(self, now_ns: int) -> list[AlertRecord]:
        """Every alert ever recorded, folded from events and actions, as the dashboard folds.

        The state bucket (events) and the ops bucket (actions) are read from their beginning
        on the first call and every FULL_REFRESH_CYCLES calls: an alert's id comes from its
        opening raise, however old. In between only what is newer than the last read minus
        LATE_MARGIN is read, merged by identity (a point's series and time), since re-reading
        everything each cycle costs more than everything else in it. A device's alert whose
        own time is older than the margin (a long store-and-forward replay) is folded in by
        the next full read.
        """
        now = datetime.fromtimestamp(now_ns / NS_PER_SECOND, tz=UTC)
        full = self._reads_since_full >= FULL_REFRESH_CYCLES or self._last_read is None
        start = BEGINNING if full or self._last_read is None else self._last_read - LATE_MARGIN
        params = {"start": start, "stop": now + FUTURE_SKEW}
        events = parse_alert_events(
            self._query("alert_events", {**params, "bucket": self._config.alert_bucket})
        )
        actions = parse_alert_actions(
            self._query("alert_actions", {**params, "bucket": self._config.bucket_ops})
        )
        if full:
            self._events, self._actions = {}, {}
            self._reads_since_full = 0
        self._reads_since_full += 1
        self._last_read = now
        for e in events:
            self._events[(e.site, e.device, e.type, e.ts_ns)] = e
        for a in actions:
            self._actions[(a.alert_id, a.action, a.user, a.ts_ns)] = a
        return fold_alerts(self._events.values(), self._actions.values())

    def _ops_since(self, now_ns: int) -> dict[str, Any]:
        now = datetime.fromtimestamp(now_ns / NS_PER_SECOND, tz=UTC)
        return {
            "bucket": self._config.bucket_ops,
            "start": now - timedelta(days=self._config.lookback_days),
        }

    def rule_states(self, now_ns: int) -> dict[InstanceKey, InstanceState]:
        return parse_rule_states(self._query("rule_state_last", self._ops_since(now_ns)))

    def notification_log(self, now_ns: int) -> list[LogRecord]:
        return parse_log(self._query("notification_log", self._ops_since(now_ns)))

    def silences(self, now_ns: int) -> list[Silence]:
        # A recurring window may have been created long ago: read all of the ops bucket.
        params = {"bucket": self._config.bucket_ops, "start": datetime(1970, 1, 2, tzinfo=UTC)}
        return fold_silences(parse_silence_rows(self._query("silences", params)))

    # -- writes

    def write_alert_events(self, events: Sequence[RuleAlertEvent]) -> None:
        """The one place rule alert events are written: the state bucket, as the ingest writes
        a device's, with the alerter's clock now as their receipt time."""
        received_ns = self.stamp()
        self._write(self._config.alert_bucket, [rule_alert_line(e, received_ns) for e in events])

    def write_rule_states(
        self, states: Mapping[InstanceKey, InstanceState], keys: Sequence[InstanceKey]
    ) -> None:
        self._write(
            self._config.bucket_ops,
            [rule_state_line(k, states[k], self.stamp()) for k in keys],
        )

    def write_rule_evals(
        self, summary: Mapping[str, Mapping[str, int]], duration_ms: float
    ) -> None:
        ts = self.stamp()
        self._write(
            self._config.bucket_ops,
            [rule_eval_line(rule, counts, duration_ms, ts) for rule, counts in summary.items()],
        )

    def write_notifications(
        self, records: Sequence[tuple[Notification, str, int, str]]
    ) -> list[LogRecord]:
        """Delivery-log records (notification, status, attempt, error); returns them as read."""
        stamped = [
            (n, status, attempt, error, self.stamp()) for n, status, attempt, error in records
        ]
        self._write(
            self._config.bucket_ops,
            [
                notification_line(n, status=status, ts_ns=ts, attempt=attempt, error=error)
                for n, status, attempt, error, ts in stamped
            ],
        )
        return [
            LogRecord(
                key=n.key,
                ts_ns=ts,
                status=status,
                attempt=attempt,
                error=error,
                alert_id=n.alert_id,
                site=n.site,
                device=n.device,
                type=n.type,
                severity=n.severity,
                receiver=n.receiver,
                target=n.target,
                kind=n.kind,
                title=n.title,
                body=n.body,
                batch=n.batch,
            )
            for n, status, attempt, error, ts in stamped
        ]


def make_client(config: StoreConfig) -> InfluxDBClient:
    """The alerter's one InfluxDB client."""
    return InfluxDBClient(
        url=config.url,
        token=config.token,
        org=config.org,
        timeout=int(config.timeout_s * 1000),
    )
