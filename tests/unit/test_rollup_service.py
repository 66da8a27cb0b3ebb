"""The rollup service's loop over a fake store: what it reads, writes and records, in order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from edgewatch.settings import load_settings
from rollup.plan import LEVEL_1H, LEVEL_1M, as_datetime
from rollup.service import RollupService, RollupStore

S = 1_000_000_000
MINUTE = 60 * S
HOUR = 60 * MINUTE
NOW = 100 * HOUR + 10 * MINUTE  # 100:10, so 100:08 is the newest safe minute


class FakeStore:
    """Stands in for RollupStore: records statements and writes, serves fixed answers."""

    raw, bucket_1m, bucket_1h = "raw", "raw_1m", "raw_1h"

    def __init__(self, progress: dict[str, int], pending: list[dict[str, Any]]) -> None:
        self._progress = dict(progress)
        self._pending = pending
        self.statements: list[str] = []
        self.writes: list[tuple[str, list[str]]] = []

    def target(self, level: str) -> str:
        return self.bucket_1m if level == LEVEL_1M else self.bucket_1h

    def progress(self, now_ns: int) -> dict[str, int]:
        return dict(self._progress)

    def write_progress(self, level: str, through_ns: int) -> None:
        self._progress[level] = through_ns

    def devices(self, start_ns: int, stop_ns: int) -> list[str]:
        return ["d"]

    def influxql(self, statement: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        self.statements.append(statement)
        window = int(statement.split("time >= ")[1].split(maxsplit=1)[0])
        return [
            {
                "tags": {"site": "s", "device": "d"},
                "columns": ["time", "x"],
                "values": [[window + S, 1.0]],
            }
        ]

    def pending(self, now_ns: int, limit: int) -> list[dict[str, Any]]:
        found, self._pending = self._pending, []
        return found

    def write(self, lines: Sequence[str], bucket: str | None = None) -> None:
        self.writes.append((bucket or self.bucket_1m, list(lines)))


def service(store: FakeStore) -> RollupService:
    return RollupService(
        store=store,  # type: ignore[arg-type]
        settings=load_settings(rollup_first_catch_up_seconds=0),
        clock=lambda: NOW,
    )


def test_a_first_start_stores_its_progress_before_taking_dirty_hours() -> None:
    hour = 90 * HOUR
    mark = {"_time": as_datetime(hour), "site": "s", "device": "d", "received_ns": 5}
    store = FakeStore(progress={}, pending=[mark])
    report = service(store).run_once()
    assert report.progress[LEVEL_1M] == 100 * HOUR + 8 * MINUTE
    assert report.progress[LEVEL_1H] == 100 * HOUR
    # The dirty hour is below both frontiers: its minutes are read, the hour folded from them.
    assert len(store.statements) == 1 and store.statements[0].startswith("SELECT * ")
    buckets = [bucket for bucket, _ in store.writes]
    assert buckets == ["raw_1m", "raw_1h", "raw_1m"]  # minutes, hour, then the done record
    assert store.writes[-1][1] == [f"rollup_done,device=d,site=s received_ns=5i {hour}"]
    assert report.dirty_hours == 1


def test_the_frontier_takes_each_closed_minute_once() -> None:
    store = FakeStore(
        progress={LEVEL_1M: 100 * HOUR + 6 * MINUTE, LEVEL_1H: 100 * HOUR}, pending=[]
    )
    rollup = service(store)
    first = rollup.run_once()
    assert first.windows == {LEVEL_1M: 2, LEVEL_1H: 0}
    again = rollup.run_once()
    assert again.windows == {LEVEL_1M: 0, LEVEL_1H: 0}
    assert datetime.fromtimestamp(first.progress[LEVEL_1M] / S, tz=UTC).minute == 8


def test_a_store_is_what_the_service_expects() -> None:
    # The fake must not drift from the real store's surface.
    for name in ("target", "progress", "write_progress", "devices", "influxql", "pending", "write"):
        assert callable(getattr(RollupStore, name))
