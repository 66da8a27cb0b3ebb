"""alerter room, I/O: everything the alerter reads from and writes to InfluxDB.

Reads the fleet (status, last-seen, readings, ingest heartbeat), the alert events and
operators' actions, and its own state (rule states, delivery log, silences); writes rule
alert events (`write_alert_events`, the one place that picks their bucket), rule states,
evaluation summaries and delivery records. Queries are the `.flux` files next to this module,
every value passed as a parameter.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
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
from edgewatch.health import DeviceSnapshot, fleet_health
from edgewatch.rules import RulesConfig
from edgewatch.settings import Settings
from edgewatch.silences import Silence, fold_silences, in_maintenance, parse_silence_rows

logger = logging.getLogger(__name__)

QUERIES_DIR = Path(__file__).parent / "queries"
DEVICE_LOOKBACK = timedelta(days=30)
# Readings older than this are "no data" for threshold rules, not a current value.
METRIC_LOOKBACK = timedelta(minutes=15)
NS_PER_SECOND = 1_000_000_000
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


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _str(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class StoreConfig:
    url: str
    org: str
    token: str
    bucket: str
    bucket_ops: str
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
            timeout_s=settings.influxdb_timeout_seconds,
            ingest_interval_s=settings.ingest_stats_interval_seconds,
            lookback_days=settings.alert_lookback_days,
        )

    @property
    def alert_bucket(self) -> str:
        """Where rule alert events go: beside the devices' own, so every page sees them."""
        return self.bucket


def parse_fleet(
    status_rows: Iterable[Row],
    seen_rows: Iterable[Row],
) -> tuple[list[DeviceSnapshot], dict[tuple[str, str], str | None]]:
    """Snapshots for the health model, and each device's model name (for rule matchers)."""
    fields: dict[tuple[str, str], dict[str, tuple[int, Any]]] = {}
    for row in status_rows:
        key = (str(row["site"]), str(row["device"]))
        fields.setdefault(key, {})[str(row["_field"])] = (_ns(row["_time"]), row.get("_value"))
    seen = {(str(r["site"]), str(r["device"])): _ns(r["_time"]) for r in seen_rows}
    snapshots = []
    models: dict[tuple[str, str], str | None] = {}
    for key in sorted(set(fields) | set(seen)):
        status = fields.get(key, {})
        state = status.get("state")
        reason = status.get("reason")
        interval = status.get("interval_s")
        snapshots.append(
            DeviceSnapshot(
                site=key[0],
                device=key[1],
                last_telemetry_ns=seen.get(key),
                status_state=_str(state[1]) if state else None,
                status_ns=state[0] if state else None,
                status_reason=(
                    _str(reason[1]) if reason and state and reason[0] == state[0] else None
                ),
                interval_s=_float(interval[1]) if interval else None,
            )
        )
        model = status.get("model")
        models[key] = _str(model[1]) if model else None
    return snapshots, models


def parse_rates(
    first_rows: Iterable[Row], last_rows: Iterable[Row]
) -> dict[tuple[str, str], float]:
    """(last - first) / seconds between them, per device with two distinct points."""
    firsts = {}
    for row in first_rows:
        value = _float(row.get("_value"))
        if value is not None:
            firsts[(str(row["site"]), str(row["device"]))] = (_ns(row["_time"]), value)
    rates = {}
    for row in last_rows:
        key = (str(row["site"]), str(row["device"]))
        value = _float(row.get("_value"))
        if value is None or key not in firsts:
            continue
        t0, v0 = firsts[key]
        t1 = _ns(row["_time"])
        if t1 > t0:
            rates[key] = (value - v0) / ((t1 - t0) / NS_PER_SECOND)
    return rates


def parse_alert_events(rows: Iterable[Row]) -> list[StoredAlertEvent]:
    return [
        StoredAlertEvent(
            site=str(row["site"]),
            device=str(row["device"]),
            type=str(row["type"]),
            ts_ns=int(row["time_ns"]),
            severity=str(row.get("severity") or "info"),
            state=str(row.get("state") or "raised"),
            message=str(row.get("message") or ""),
            value=_float(row.get("value")),
        )
        for row in rows
    ]


def parse_alert_actions(rows: Iterable[Row]) -> list[AlertAction]:
    return [
        AlertAction(
            alert_id=str(row["alert_id"]),
            action=str(row["action"]),
            user=str(row.get("user") or ""),
            ts_ns=int(row["time_ns"]),
            note=str(row.get("note") or ""),
            snooze_until_ns=int(row.get("snooze_until_ns") or 0),
        )
        for row in rows
        if row.get("alert_id") and row.get("action")
    ]


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
        )
        for row in rows
        if row.get("key")
    ]


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

    @property
    def config(self) -> StoreConfig:
        return self._config

    def stamp(self) -> int:
        """Now in ns, strictly increasing: two records of one series never share a time."""
        self._last_stamp_ns = max(time.time_ns(), self._last_stamp_ns + 1)
        return self._last_stamp_ns

    def _query(self, name: str, params: Mapping[str, Any]) -> list[Row]:
        text = (QUERIES_DIR / f"{name}.flux").read_text(encoding="utf-8")
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
        params = {"bucket": self._config.bucket, "start": now - DEVICE_LOOKBACK}
        snapshots, models = parse_fleet(
            self._query("device_status_last", params), self._query("telemetry_last_seen", params)
        )
        beat = self._query("ingest_heartbeat", params)
        beat_ns = _ns(beat[0]["_time"]) if beat else None
        beat_interval = (_float(beat[0].get("_value")) if beat else None) or (
            self._config.ingest_interval_s
        )
        health = fleet_health(
            snapshots,
            now_ns,
            ingest_last_report_ns=beat_ns,
            ingest_report_interval_s=beat_interval,
        )
        metrics: dict[tuple[str, str], dict[str, float]] = {}
        wanted = sorted({r.metric for r in config.rules if r.kind == "threshold"})
        for metric in wanted:
            rows = self._query(
                "metric_last",
                {"bucket": self._config.bucket, "start": now - METRIC_LOOKBACK, "metric": metric},
            )
            for row in rows:
                value = _float(row.get("_value"))
                if value is not None:
                    key = (str(row["site"]), str(row["device"]))
                    metrics.setdefault(key, {})[str(row["_field"])] = value
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
        intervals = {(s.site, s.device): s.interval_s for s in snapshots}
        devices = tuple(
            DeviceView(
                health=h,
                model=models.get((h.site, h.device)),
                interval_s=intervals.get((h.site, h.device)),
                metrics=metrics.get((h.site, h.device), {}),
                in_maintenance=in_maintenance(silences, h.site, h.device, now_ns),
            )
            for h in health
        )
        silent = bool(health) and all(h.state == "UNKNOWN" for h in health)
        if not health and beat_ns is None:
            silent = True
        return FleetInput(
            devices=devices,
            ingest_silent=silent,
            ingest_reason=health[0].reason if silent and health else "no heartbeat",
            rates=rates,
        )

    def alert_records(self, now_ns: int) -> list[AlertRecord]:
        """Every alert over the lookback, folded from events and actions.

        The whole lookback is read on the first call and every FULL_REFRESH_CYCLES calls;
        in between only what is newer than the last read minus LATE_MARGIN, merged by
        identity (a point's series and time), since re-reading 30 days of events each cycle
        costs more than everything else in it. A device's alert that arrives later than the
        margin (a long store-and-forward replay) is folded in by the next full read.
        """
        now = datetime.fromtimestamp(now_ns / NS_PER_SECOND, tz=UTC)
        oldest = now - timedelta(days=self._config.lookback_days)
        full = self._reads_since_full >= FULL_REFRESH_CYCLES or self._last_read is None
        start = oldest if full or self._last_read is None else self._last_read - LATE_MARGIN
        params = {"start": start, "stop": now + timedelta(minutes=10)}
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
        oldest_ns = int(oldest.timestamp()) * NS_PER_SECOND
        self._events = {k: e for k, e in self._events.items() if e.ts_ns >= oldest_ns}
        self._actions = {k: a for k, a in self._actions.items() if a.ts_ns >= oldest_ns}
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
        """The one place rule alert events are written (and so the one place to move them)."""
        self._write(self._config.alert_bucket, [rule_alert_line(e) for e in events])

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
