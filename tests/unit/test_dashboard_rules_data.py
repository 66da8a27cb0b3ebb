"""The Rules page's pure helpers: MAINTENANCE on the fleet overview, rule states, the log."""

from __future__ import annotations

import pandas as pd

from dashboard.rules_data import evals_frame, log_frame, merge_notifications, with_maintenance
from edgewatch.silences import new_silence

S = 1_000_000_000


def test_devices_in_a_window_show_maintenance_instead_of_offline() -> None:
    devices = pd.DataFrame(
        [
            {"site": "s1", "device": "cam1", "state": "OFFLINE", "reason": "lwt"},
            {"site": "s1", "device": "cam2", "state": "ONLINE", "reason": "ok"},
            {"site": "s2", "device": "cam1", "state": "OFFLINE", "reason": "lwt"},
        ]
    )
    window = new_silence(
        kind="maintenance",
        created_by="ann",
        reason="firmware",
        now_ns=0,
        starts_ns=0,
        ends_ns=100 * S,
        site="s1",
    )
    shown = with_maintenance(devices, [window], 50 * S)
    assert list(shown["state"]) == ["MAINTENANCE", "ONLINE", "OFFLINE"]
    assert "firmware" in shown.iloc[0]["reason"]
    # Expired by itself: back to what the health model says.
    assert with_maintenance(devices, [window], 200 * S).iloc[0]["state"] == "OFFLINE"


def test_rule_state_is_the_worst_of_its_instances() -> None:
    now = pd.Timestamp("2026-01-01", tz="UTC")
    rows = [
        {"rule": "b", "firing": 0, "pending": 2, "ok": 5, "_time": now, "duration_ms": 3.0},
        {"rule": "a", "firing": 1, "pending": 0, "ok": 5, "_time": now, "duration_ms": 3.0},
    ]
    frame = evals_frame(rows, 0)
    assert list(zip(frame["rule"], frame["state"], strict=True)) == [
        ("a", "firing"),
        ("b", "pending"),
    ]


def test_log_newest_first() -> None:
    frame = log_frame(
        [
            {"time_ns": 1, "key": "k", "status": "pending"},
            {"time_ns": 2, "key": "k", "status": "sent", "attempt": 1},
        ]
    )
    assert list(frame["status"]) == ["sent", "pending"]


def test_an_alerts_history_shows_each_notification_attempt() -> None:
    history = pd.DataFrame(
        [{"time": pd.Timestamp(0, unit="ns", tz="UTC"), "what": "raised", "by": "rule", "note": ""}]
    )
    log = log_frame(
        [
            {
                "time_ns": 5,
                "key": "k",
                "status": "pending",
                "kind": "raised",
                "alert_id": "a",
                "receiver": "default",
            },
            {
                "time_ns": 6,
                "key": "k",
                "status": "failed",
                "kind": "raised",
                "alert_id": "a",
                "receiver": "default",
                "attempt": 1,
                "error": "refused",
            },
            {"time_ns": 7, "key": "o", "status": "sent", "kind": "raised", "alert_id": "other"},
        ]
    )
    merged = merge_notifications(history, log, "a")
    assert list(merged["what"]) == [
        "raised",
        "notification raised pending",
        "notification raised failed (attempt 1)",
    ]
    assert list(merged["note"])[-1] == "refused"
