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
    device_params,
    dirty_jobs,
    fold_to_hours,
    frontier_chunks,
    parse_dirty,
    points_statement,
    rollup_lines,
    stats_from_points,
)

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


def test_the_statement_binds_device_names_and_reads_one_series_per_device() -> None:
    text = points_statement(10 * HOUR, 11 * HOUR, ["cam-1", "cam-2"])
    assert text == (
        f"SELECT * FROM telemetry WHERE time >= {10 * HOUR} AND time < {11 * HOUR} "
        "AND (device = $d0 OR device = $d1) GROUP BY *"
    )
    assert device_params(["cam-1", "cam-2"]) == {"d0": "cam-1", "d1": "cam-2"}


def test_names_outside_the_contract_never_reach_a_query() -> None:
    with pytest.raises(ValueError, match="device name"):
        points_statement(0, MINUTE, ["x' OR 1=1"])


POINTS = [
    {
        "name": "telemetry",
        "tags": {"device": "d", "site": "s"},
        "columns": ["time", "camera_ok", "cpu"],
        "values": [
            [10 * HOUR + 1 * S, True, 1.0],
            [10 * HOUR + 20 * S, False, 5.0],
            [10 * HOUR + 40 * S, True, 3.0],
            [10 * HOUR + 50 * S, True, None],  # a reading without cpu
            [10 * HOUR + MINUTE + 1 * S, False, 6.0],
        ],
    }
]


def test_numbers_keep_their_stats_and_a_boolean_becomes_zero_or_one() -> None:
    stats, trues = stats_from_points(POINTS, MINUTE)
    assert rollup_lines(stats, trues)[:4] == [
        f"telemetry,device=d,site=s,stat=mean camera_ok=0.75,cpu=3.0 {10 * HOUR}",
        f"telemetry,device=d,site=s,stat=min camera_ok=0.0,cpu=1.0 {10 * HOUR}",
        f"telemetry,device=d,site=s,stat=max camera_ok=1.0,cpu=5.0 {10 * HOUR}",
        f"telemetry,device=d,site=s,stat=count camera_ok=4.0,cpu=3.0 {10 * HOUR}",
    ]
    assert rollup_lines(stats, trues)[4] == (
        f"telemetry,device=d,site=s,stat=mean camera_ok=0.0,cpu=6.0 {10 * HOUR + MINUTE}"
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


def test_minutes_fold_into_the_hour_a_raw_read_would_give() -> None:
    minutes = rollup_lines(*fold_to_hours(*stats_from_points(POINTS, MINUTE)))
    hour = rollup_lines(*stats_from_points(POINTS, HOUR))
    # (1 + 5 + 3 + 6) / 4 raw points, not the mean of the minute means (3 and 6).
    assert minutes == hour
    assert hour[0] == f"telemetry,device=d,site=s,stat=mean camera_ok=0.6,cpu=3.75 {10 * HOUR}"
