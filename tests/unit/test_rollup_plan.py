"""The rollup service's decisions (rollup/plan.py): which windows, chunks and queries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rollup.plan import (
    LEVEL_1H,
    LEVEL_1M,
    DirtyHour,
    as_datetime,
    boolean_fields,
    chunked,
    closed_until,
    datetime_ns,
    device_params,
    dirty_jobs,
    flag_statement,
    fold_to_hours,
    frontier_chunks,
    parse_dirty,
    parse_stats,
    parse_true_counts,
    rollup_lines,
    stats_statement,
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


def test_the_statement_binds_device_names_and_groups_by_series_and_window() -> None:
    text = stats_statement(LEVEL_1M, 10 * HOUR, 11 * HOUR, ["cam-1", "cam-2"])
    assert text == (
        "SELECT mean(*), min(*), max(*), count(*) FROM telemetry "
        f"WHERE time >= {10 * HOUR} AND time < {11 * HOUR} "
        "AND (device = $d0 OR device = $d1) GROUP BY time(1m), * fill(none)"
    )
    assert device_params(["cam-1", "cam-2"]) == {"d0": "cam-1", "d1": "cam-2"}
    assert "time(1h)" in stats_statement(LEVEL_1H, 0, HOUR, ["d"])
    assert '"camera_ok" = true' in flag_statement(LEVEL_1M, 0, MINUTE, ["d"], "camera_ok")


def test_names_outside_the_contract_never_reach_a_query() -> None:
    with pytest.raises(ValueError, match="device name"):
        stats_statement(LEVEL_1M, 0, MINUTE, ["x' OR 1=1"])
    with pytest.raises(ValueError, match="field name"):
        flag_statement(LEVEL_1M, 0, MINUTE, ["d"], 'x" = true OR "y')


SERIES = [
    {
        "name": "telemetry",
        "tags": {"device": "d", "site": "s"},
        "columns": [
            "time", "mean_cpu", "min_camera_ok", "min_cpu", "max_camera_ok", "max_cpu",
            "count_camera_ok", "count_cpu",
        ],
        "values": [[10 * HOUR, 3.0, False, 1.0, True, 5.0, 4, 3]],
    }
]  # fmt: skip
TRUES = [
    {"tags": {"device": "d", "site": "s"}, "columns": ["time", "count"], "values": [[10 * HOUR, 3]]}
]


def test_numbers_keep_their_stats_and_a_boolean_becomes_zero_or_one() -> None:
    stats = parse_stats(SERIES)
    assert boolean_fields(stats) == {"camera_ok"}
    assert rollup_lines(stats, parse_true_counts(TRUES, "camera_ok")) == [
        f"telemetry,device=d,site=s,stat=mean camera_ok=0.75,cpu=3.0 {10 * HOUR}",
        f"telemetry,device=d,site=s,stat=min camera_ok=0.0,cpu=1.0 {10 * HOUR}",
        f"telemetry,device=d,site=s,stat=max camera_ok=1.0,cpu=5.0 {10 * HOUR}",
        f"telemetry,device=d,site=s,stat=count camera_ok=4.0,cpu=3.0 {10 * HOUR}",
    ]


def test_a_boolean_window_without_true_counts_had_none_true() -> None:
    first = rollup_lines(parse_stats(SERIES), {})[0]
    assert first.startswith("telemetry,device=d,site=s,stat=mean camera_ok=0.0,")


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
    series = [
        {
            "tags": {"device": "d", "site": "s"},
            "columns": ["time", "mean_cpu", "min_cpu", "max_cpu", "count_cpu",
                        "min_ok", "max_ok", "count_ok"],
            "values": [
                [10 * HOUR, 2.0, 1.0, 3.0, 2, True, True, 2],  # raw cpu 1, 3
                [10 * HOUR + MINUTE, 6.0, 6.0, 6.0, 1, False, True, 4],  # raw cpu 6
            ],
        }
    ]  # fmt: skip
    trues = {("s", "d", 10 * HOUR, "ok"): 2, ("s", "d", 10 * HOUR + MINUTE, "ok"): 1}
    hours, hour_trues = fold_to_hours(parse_stats(series), trues)
    assert rollup_lines(hours, hour_trues) == [
        # (1 + 3 + 6) / 3 raw points, not (2 + 6) / 2 minutes; ok: 3 true of 6.
        f"telemetry,device=d,site=s,stat=mean cpu={10 / 3!r},ok=0.5 {10 * HOUR}",
        f"telemetry,device=d,site=s,stat=min cpu=1.0,ok=0.0 {10 * HOUR}",
        f"telemetry,device=d,site=s,stat=max cpu=6.0,ok=1.0 {10 * HOUR}",
        f"telemetry,device=d,site=s,stat=count cpu=3.0,ok=6.0 {10 * HOUR}",
    ]
