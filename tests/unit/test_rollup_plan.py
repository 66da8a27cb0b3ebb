"""The rollup service's decisions (rollup/plan.py): which windows, chunks and queries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rollup.plan import (
    LEVEL_1H,
    LEVEL_1M,
    DirtyHour,
    as_datetime,
    chunked,
    closed_until,
    datetime_ns,
    dirty_jobs,
    frontier_chunks,
    parse_dirty,
    render,
    rollup_queries,
)
from rollup.service import query_text

S = 1_000_000_000
MINUTE = 60 * S
HOUR = 60 * MINUTE


def test_a_minute_is_rolled_up_once_the_late_threshold_and_grace_have_passed() -> None:
    now = 10 * HOUR + 2 * MINUTE + 29 * S  # 10:02:29: 10:00 closed 89 s ago
    assert closed_until(now, LEVEL_1M, 30 * S) == 10 * HOUR
    assert closed_until(now + S, LEVEL_1M, 30 * S) == 10 * HOUR + MINUTE  # 10:00 is safe now
    assert closed_until(now, LEVEL_1H, 30 * S) == 10 * HOUR


def test_frontier_chunks_cover_the_gap_in_aligned_pieces() -> None:
    chunks = frontier_chunks(10 * HOUR + 30 * MINUTE, 12 * HOUR + 5 * MINUTE, LEVEL_1M)
    assert chunks == [
        (10 * HOUR + 30 * MINUTE, 11 * HOUR),
        (11 * HOUR, 12 * HOUR),
        (12 * HOUR, 12 * HOUR + 5 * MINUTE),
    ]
    assert frontier_chunks(12 * HOUR, 12 * HOUR, LEVEL_1M) == []


def test_devices_are_chunked() -> None:
    assert chunked(["a", "b", "c"], 2) == [["a", "b"], ["c"]]
    with pytest.raises(ValueError, match="at least one"):
        chunked(["a"], 0)


def test_numeric_and_boolean_queries_select_by_parameter_names_only() -> None:
    queries = rollup_queries(
        raw_bucket="raw",
        target_bucket="raw_1m",
        level=LEVEL_1M,
        start_ns=10 * HOUR,
        stop_ns=11 * HOUR,
        devices=["cam-1", "cam-2"],
        boolean_fields={"camera_ok"},
    )
    numeric, flags = queries
    assert numeric.text_parts == {
        "devices": "r.device == _d0 or r.device == _d1",
        "numeric": "r._field != _b0",
    }
    assert flags.text_parts["flags"] == "r._field == _b0"
    assert numeric.params["d1"] == "cam-2" and numeric.params["b0"] == "camera_ok"
    text = render(query_text(numeric.template), numeric.text_parts)
    assert "cam-1" not in text and "${" not in text
    # Pushed down: nothing between filter and aggregateWindow in any branch.
    assert text.count("|> aggregateWindow(") == 4
    assert "types.isType" not in text


def test_without_booleans_there_is_one_query_and_no_field_filter() -> None:
    (query,) = rollup_queries(
        raw_bucket="raw",
        target_bucket="raw_1h",
        level=LEVEL_1H,
        start_ns=0,
        stop_ns=HOUR,
        devices=["d"],
        boolean_fields=(),
    )
    assert query.text_parts["numeric"] == "true"


def test_names_outside_the_contract_never_reach_a_query() -> None:
    with pytest.raises(ValueError, match="device name"):
        rollup_queries(
            raw_bucket="r",
            target_bucket="t",
            level=LEVEL_1M,
            start_ns=0,
            stop_ns=MINUTE,
            devices=['x" or true'],
            boolean_fields=(),
        )


def test_dirty_hours_leave_what_the_frontier_has_not_reached_to_it() -> None:
    marks = [
        DirtyHour(hour_ns=8 * HOUR, site="s", device="b", received_ns=5),
        DirtyHour(hour_ns=8 * HOUR, site="t", device="a", received_ns=6),
        DirtyHour(hour_ns=10 * HOUR, site="s", device="a", received_ns=7),
    ]
    jobs = dirty_jobs(
        marks, through_1m_ns=10 * HOUR + 20 * MINUTE, through_1h_ns=10 * HOUR, chunk_size=1
    )
    assert [(j.hour_ns, j.devices, j.hour_closed) for j in jobs] == [
        (8 * HOUR, ("a",), True),
        (8 * HOUR, ("b",), True),
        (10 * HOUR, ("a",), False),
    ]
    assert jobs[0].minutes_stop_ns == 9 * HOUR
    assert jobs[2].minutes_stop_ns == 10 * HOUR + 20 * MINUTE  # the rest is the frontier's
    assert {m.received_ns for j in jobs for m in j.marks} == {5, 6, 7}


def test_pending_rows_become_dirty_hours_and_odd_rows_are_skipped() -> None:
    when = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    rows = [
        {"_time": when, "site": "s", "device": "d", "received_ns": 42},
        {"_time": when, "site": "s", "device": "bad name", "received_ns": 1},
        {"_time": when, "site": "s", "device": "d"},
    ]
    assert parse_dirty(rows) == [
        DirtyHour(hour_ns=datetime_ns(when), site="s", device="d", received_ns=42)
    ]


def test_times_round_trip() -> None:
    assert datetime_ns(as_datetime(1_764_237_600 * S)) == 1_764_237_600 * S
