"""The audit trail: every action row, whatever its kind, as who/when/what/note CSV."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pandas as pd

from dashboard.audit import audit_csv, audit_frame

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2026, 1, 1, 13, 0, tzinfo=UTC)


def test_rows_of_any_action_kind_become_one_trail_oldest_first() -> None:
    rows = [
        {"_time": T1, "_measurement": "user_action", "action": "remove", "user": "root",
         "target": "bob", "result": "_result", "table": 1},
        {"_time": T0, "_measurement": "alert_action", "site": "s", "device": "d",
         "type": "overheat", "action": "ack", "user": "ana", "note": "fan", "alert_id": "x",
         "snooze_until_ns": 0},
    ]  # fmt: skip
    trail = audit_frame(rows)
    assert list(trail["who"]) == ["ana", "root"]
    assert list(trail["what"]) == ["alert", "user"]
    assert list(trail["subject"]) == ["s d overheat", "bob"]
    assert trail.iloc[0]["details"] == "alert_id=x; snooze_until_ns=0"


def test_the_csv_keeps_notes_as_text_for_spreadsheets() -> None:
    rows = [{"_time": T0, "_measurement": "alert_action", "user": "ana", "note": "=1+1"}]
    back = pd.read_csv(io.BytesIO(audit_csv(audit_frame(rows))))
    assert back.iloc[0]["note"] == "'=1+1"
    assert back.iloc[0]["time"] == "2026-01-01T12:00:00+00:00"


def test_an_empty_trail_is_a_header() -> None:
    header = audit_csv(audit_frame([])).decode().strip()
    assert header == "time,who,what,action,subject,note,details"
