"""dashboard room: the data of the Rules page (rule states, delivery log, silences).

Reads what the alerter writes to the ops bucket (`rule_eval`, `rule_state`, `notification`)
and the silences and maintenance windows, through InfluxDB only: the dashboard never imports
the alerter. Writes silences (create, expire) for operators, checked here whatever the page
shows; each change is a `silence` point with who and why, which is the audit trail. Uses the
client and the query files of `data.py`, beside which it sits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision

from dashboard.auth import User, require_operator
from dashboard.data import (
    Connection,
    StoreUnavailableError,
    cached_data,
    get_client,
    load_query,
    unreachable_message,
)
from edgewatch.labels import selector_text
from edgewatch.silences import (
    ACTION_CREATE,
    ACTION_EXPIRE,
    MAX_REASON_CHARS,
    Silence,
    SilenceEvent,
    fold_silences,
    parse_silence_rows,
    silence_line,
)

logger = logging.getLogger(__name__)
NS_PER_SECOND = 1_000_000_000
MAINTENANCE = "MAINTENANCE"
LOG_LIMIT = 500


def _query(connection: Connection, name: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    client = get_client(connection.url, connection.token, connection.org, connection.timeout_s)
    try:
        tables = client.query_api().query(
            load_query(name),
            org=connection.org,
            params={f"_{k}": v for k, v in params.items()},
        )
    except Exception as exc:
        logger.warning("query %s failed against %s: %s", name, connection.url, exc)
        raise StoreUnavailableError(unreachable_message(connection.url, exc)) from exc
    return [dict(record.values) for table in tables for record in table.records]


def _write(connection: Connection, line: str) -> None:
    client = get_client(connection.url, connection.token, connection.org, connection.timeout_s)
    try:
        with client.write_api(write_options=SYNCHRONOUS) as writer:
            writer.write(
                bucket=connection.bucket_ops,
                org=connection.org,
                record=line,
                write_precision=WritePrecision.NS,
            )
    except Exception as exc:
        raise StoreUnavailableError(unreachable_message(connection.url, exc)) from exc


def _since(days: int) -> datetime:
    return datetime.now(tz=UTC) - timedelta(days=days)


# ------------------------------------------------------------------------------ pure


def evals_frame(rows: Sequence[Mapping[str, Any]], now_ns: int) -> pd.DataFrame:
    """One row per rule: its state (firing if any instance fires, else pending, else ok)."""
    out = []
    for row in rows:
        firing, pending = int(row.get("firing") or 0), int(row.get("pending") or 0)
        state = "firing" if firing else "pending" if pending else "ok"
        out.append(
            {
                "rule": str(row["rule"]),
                "state": state,
                "firing": firing,
                "pending": pending,
                "ok": int(row.get("ok") or 0),
                "last_evaluation": pd.Timestamp(row["_time"]),
                "cycle_ms": float(row.get("duration_ms") or 0.0),
            }
        )
    columns = ["rule", "state", "firing", "pending", "ok", "last_evaluation", "cycle_ms"]
    return (
        pd.DataFrame(out, columns=columns).sort_values("rule")
        if out
        else pd.DataFrame(columns=columns)
    )


def instances_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The rule instances that are pending or firing now."""
    out = [
        {
            "rule": str(r["rule"]),
            "site": str(r["site"]),
            "device": str(r["device"]),
            "state": str(r.get("state")),
            "since": pd.Timestamp(int(r.get("since_ns") or 0), unit="ns", tz="UTC"),
        }
        for r in rows
        if r.get("state") in ("pending", "firing")
    ]
    return pd.DataFrame(out, columns=["rule", "site", "device", "state", "since"])


def log_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The delivery log, newest first: each record (pending, attempt, outcome) one row."""
    out = [
        {
            "time": pd.Timestamp(int(r["time_ns"]), unit="ns", tz="UTC"),
            "status": str(r.get("status") or ""),
            "kind": str(r.get("kind") or ""),
            "receiver": str(r.get("receiver") or ""),
            "attempt": int(r.get("attempt") or 0),
            "site": str(r.get("site") or ""),
            "device": str(r.get("device") or ""),
            "type": str(r.get("type") or ""),
            "alert_id": str(r.get("alert_id") or ""),
            "key": str(r.get("key") or ""),
            "error": str(r.get("error") or ""),
        }
        for r in rows
    ]
    columns = [
        "time", "status", "kind", "receiver", "attempt", "site", "device", "type",
        "alert_id", "key", "error",
    ]  # fmt: skip
    frame = pd.DataFrame(out, columns=columns)
    return frame.sort_values("time", ascending=False).head(LOG_LIMIT)


def merge_notifications(history: pd.DataFrame, log: pd.DataFrame, alert_id: str) -> pd.DataFrame:
    """An alert's history with every notification record of it (attempts and outcomes)."""
    mine = log[log["alert_id"] == alert_id] if not log.empty else log
    if mine.empty:
        return history
    rows = pd.DataFrame(
        {
            "time": mine["time"],
            "what": [
                f"notification {k} {st}" + (f" (attempt {a})" if a else "")
                for k, st, a in zip(mine["kind"], mine["status"], mine["attempt"], strict=True)
            ],
            "by": mine["receiver"],
            "note": [e or f"key {k}" for e, k in zip(mine["error"], mine["key"], strict=True)],
        }
    )
    merged = pd.concat([history, rows], ignore_index=True)
    return merged.sort_values("time", kind="stable").reset_index(drop=True)


def with_maintenance(
    devices: pd.DataFrame,
    silences: Sequence[Silence],
    now_ns: int,
    labels: Mapping[tuple[str, str], Mapping[str, str]] | None = None,
) -> pd.DataFrame:
    """Devices inside an active maintenance window show MAINTENANCE instead of OFFLINE/STALE
    (`labels`: effective labels per device, for windows that match on labels)."""
    known = labels or {}
    if devices.empty:
        return devices
    windows = [s for s in silences if s.kind == "maintenance" and s.active_at(now_ns)]
    if not windows:
        return devices
    frame = devices.copy()
    for index, row in frame.iterrows():
        if row["state"] not in ("OFFLINE", "STALE"):
            continue
        for w in windows:
            key = (str(row["site"]), str(row["device"]))
            if w.matches(*key, labels=known.get(key, {})):
                frame.at[index, "state"] = MAINTENANCE
                frame.at[index, "reason"] = f"maintenance ({w.created_by}: {w.reason})"
                break
    return frame


def silences_frame(silences: Sequence[Silence], now_ns: int) -> pd.DataFrame:
    def ts(ns: int) -> pd.Timestamp:
        return pd.Timestamp(ns, unit="ns", tz="UTC")

    out = [
        {
            "id": s.silence_id,
            "kind": s.kind,
            "active": s.active_at(now_ns),
            "site": s.site or "*",
            "device": s.device or "*",
            "type": s.type or "*",
            "labels": selector_text(s.labels),
            "starts": ts(s.starts_ns),
            "ends": ts(s.ends_ns),
            "recurs": f"{s.rrule} for {s.duration_s / 60:g} min" if s.rrule else "",
            "by": s.created_by,
            "why": s.reason,
            "expired_by": s.expired_by or "",
        }
        for s in silences
    ]
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------ loads


@cached_data
def load_silences(connection: Connection) -> list[Silence]:
    rows = _query(
        connection,
        "silences",
        {"bucket": connection.bucket_ops, "start": datetime(1970, 1, 2, tzinfo=UTC)},
    )
    return fold_silences(parse_silence_rows(rows))


@cached_data
def load_rules_view(
    connection: Connection, lookback_days: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(rules with their state, instances pending/firing, the delivery log)."""
    now_ns = time.time_ns()
    params = {"bucket": connection.bucket_ops, "start": _since(lookback_days)}
    return (
        evals_frame(_query(connection, "rule_eval_last", params), now_ns),
        instances_frame(_query(connection, "rule_instances", params)),
        log_frame(_query(connection, "notification_log", params)),
    )


# ------------------------------------------------------------------------------ writes


def create_silence(connection: Connection, *, user: User, silence: Silence) -> None:
    """Store a new silence or window (operators only; the silence names its creator)."""
    require_operator(user)
    if silence.created_by != user.name:
        raise ValueError("a silence is created in its creator's own name")
    _write(connection, silence_line(SilenceEvent(ACTION_CREATE, silence.created_ns, silence)))
    logger.info(
        "%s %s created by %s: %s", silence.kind, silence.silence_id, user.name, silence.reason
    )
    load_silences.clear()


def expire_silence(connection: Connection, *, user: User, silence_id: str, reason: str) -> None:
    """End a silence or window now (operators only), with why."""
    require_operator(user)
    if not reason.strip():
        raise ValueError("say why the silence ends early")
    if len(reason) > MAX_REASON_CHARS:
        raise ValueError(f"the reason is {len(reason)} characters; the limit is {MAX_REASON_CHARS}")
    event = SilenceEvent(ACTION_EXPIRE, time.time_ns(), None, silence_id, user.name, reason)
    _write(connection, silence_line(event))
    logger.info("silence %s expired by %s: %s", silence_id, user.name, reason)
    load_silences.clear()
