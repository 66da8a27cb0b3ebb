"""The edge spool: order, persistence across restarts, bounded drop-oldest, sequence numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.spool import Spool, SpoolError

NS = 1_000_000_000
T0 = 1_767_225_600 * NS


def _append(spool: Spool, count: int, start: int = 0) -> None:
    for index in range(start, start + count):
        spool.append_reading({"v": float(index)}, ts_ns=T0 + index * NS)


def test_keeps_order_and_numbers_readings(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite") as spool:
        _append(spool, 5)
        items = spool.all_items()
    assert [item.body["metrics"]["v"] for item in items] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [item.body["seq"] for item in items] == [0, 1, 2, 3, 4]


def test_survives_a_restart_with_its_sequence(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Spool(path) as spool:
        _append(spool, 3)
        first = spool.peek(limit=2)
        spool.remove_range(first[0].id, first[-1].id)
    with Spool(path) as spool:
        assert spool.depth == 1
        _append(spool, 2, start=3)
        items = spool.all_items()
    assert [item.body["seq"] for item in items] == [2, 3, 4]
    assert [item.body["metrics"]["v"] for item in items] == [2.0, 3.0, 4.0]


def test_a_device_seq_is_kept_and_the_counter_moves_past_it(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite") as spool:
        spool.append_reading({"v": 1.0}, ts_ns=T0, seq=41)
        spool.append_reading({"v": 2.0}, ts_ns=T0 + NS)
        assert [item.body["seq"] for item in spool.all_items()] == [41, 42]


def test_drops_the_oldest_beyond_the_message_bound_and_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Spool(path, max_messages=10) as spool:
        _append(spool, 25)
        assert spool.depth == 10
        assert spool.dropped_total == 15
        assert [item.body["metrics"]["v"] for item in spool.all_items()] == [
            float(v) for v in range(15, 25)
        ]
    with Spool(path, max_messages=10) as spool:
        assert spool.dropped_total == 15  # persisted: the report survives a restart


def test_drops_the_oldest_beyond_the_byte_bound(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite", max_bytes=2000) as spool:
        _append(spool, 100)
        assert spool.size_bytes <= 2000
        assert spool.dropped_total == 100 - spool.depth
        assert spool.all_items()[-1].body["metrics"]["v"] == 99.0


def test_removal_of_a_range_is_exact(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite") as spool:
        _append(spool, 6)
        items = spool.all_items()
        assert spool.remove_range(items[1].id, items[3].id) == 3
        assert [i.body["seq"] for i in spool.all_items()] == [0, 4, 5]
        assert spool.peek(after_id=items[0].id, limit=10)[0].body["seq"] == 4


def test_a_second_agent_on_the_same_file_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Spool(path) as spool:
        _append(spool, 1)
        with pytest.raises(SpoolError, match="in use by another agent"):
            Spool(path)


def test_stamps_are_unique_and_increasing_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Spool(path) as spool:
        # A burst within one clock tick, then a clock stepped back by a minute.
        stamps = [spool.stamp(T0) for _ in range(3)] + [spool.stamp(T0 - 60 * NS)]
        for ts in stamps:
            spool.append_reading({"v": 1.0}, ts_ns=ts)
    assert stamps == [T0, T0 + 1, T0 + 2, T0 + 3]
    with Spool(path) as spool:
        assert spool.last_ts_ns == T0 + 3
        assert spool.stamp(T0) == T0 + 4  # the clock reads the same as before the restart
        # A reading with its own time an hour ahead (a wrong device clock, rejected as clock
        # skew) does not drag the later stamps into the future with it.
        spool.append_reading({"v": 2.0}, ts_ns=T0 + 3600 * NS)
        assert spool.stamp(T0) == T0 + 5
    with Spool(path) as spool:
        assert spool.last_ts_ns == T0 + 3


def test_raised_alerts_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Spool(path) as spool:
        assert spool.raised_alerts() == frozenset()
        spool.save_raised_alerts({"overheat", "camera_lost"})
    with Spool(path) as spool:
        assert spool.raised_alerts() == {"overheat", "camera_lost"}
        spool.save_raised_alerts(set())
        assert spool.raised_alerts() == frozenset()


def test_refused_messages_are_counted(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite") as spool:
        _append(spool, 3)
        items = spool.peek()
        spool.remove_range(items[0].id, items[1].id, refused=True)
        spool.remove_range(items[2].id, items[2].id)
        assert (spool.depth, spool.refused_total) == (0, 2)


def test_stamps_far_ahead_of_a_corrected_clock_start_again_at_the_clock(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite") as spool:
        ahead = spool.stamp(T0 + 3600 * NS)  # the device clock an hour fast
        spool.append_reading({"v": 1.0}, ts_ns=ahead)
        # Corrected: within the skew limit the stamps stay increasing ...
        assert spool.stamp(T0 + 3500 * NS) == ahead + 1
        # ... beyond it, they follow the clock (the fast ones were rejected as clock skew).
        assert spool.stamp(T0) == T0
        assert spool.stamp(T0) == T0 + 1
