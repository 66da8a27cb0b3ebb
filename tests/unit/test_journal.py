"""The ingest journal and the service around it, without a network: durable append, in-order
drain, removal only after the sink stored, resume after a restart, a full journal."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgewatch.models import InboundMessage
from edgewatch.settings import load_settings
from ingest.influx_sink import InfluxSink
from ingest.journal import Journal, JournalError
from ingest.pipeline import Entry, to_entry
from ingest.service import IngestService
from tests.unit.test_ingest import ROOT, FakeInflux, FakeSource, _good, _msg


def _entry(i: int, *, lines: int = 1, state: int = 0) -> Entry:
    return Entry(
        kind="telemetry",
        lines=tuple(f"m v={i}i {i * 10 + k}" for k in range(lines)),
        state_lines=tuple(f"s v={i}i {k}" for k in range(state)),
        ack_token=i,
        topic=f"{ROOT}/s/d/telemetry",
        received_ns=1000 + i,
        payload=b'{"x": 1}',
    )


def test_journal_keeps_entries_in_order_across_a_reopen(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=10**9)
    journal.append([_entry(1), _entry(2, lines=3, state=2), _entry(3)])
    journal.close()

    reopened = Journal(tmp_path, max_bytes=10**9)
    fill = reopened.fill()
    assert fill.entries == 3
    assert fill.oldest_received_ns == 1001
    assert fill.bytes > 0
    records = reopened.read(max_lines=100)
    assert [r.entry.lines for r in records] == [
        _entry(1).lines,
        _entry(2, lines=3).lines,
        _entry(3).lines,
    ]
    assert records[1].entry.state_lines == ("s v=2i 0", "s v=2i 1")
    # What is read back was acknowledged when journaled: it carries no ack token.
    assert all(r.entry.ack_token is None for r in records)
    reopened.remove(records[:2])
    assert reopened.fill().entries == 1
    assert reopened.fill().oldest_received_ns == 1003
    reopened.remove(records[2:])
    assert reopened.fill().bytes <= 2 * 4096  # an empty database: its two first pages
    assert reopened.read(max_lines=100) == []
    reopened.close()


def test_read_takes_whole_entries_up_to_the_line_budget(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=10**9)
    journal.append([_entry(i, lines=3) for i in range(600)])
    assert len(journal.read(max_lines=7)) == 2
    # One entry larger than the budget is still read (alone), never split.
    assert len(journal.read(max_lines=1)) == 1
    assert len(journal.read(max_lines=10_000)) == 600
    journal.close()


def test_a_second_process_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=10**9)
    with pytest.raises(JournalError, match="EDGEWATCH_INGEST_INSTANCE"):
        Journal(tmp_path, max_bytes=10**9)
    journal.close()


def test_full_and_high_water(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    journal = Journal(tmp_path, max_bytes=256 * 1024, high_water_share=0.5)
    journal.append([_entry(1, lines=20)])
    assert not journal.is_full
    appended = 1
    while not journal.is_full and appended < 10_000:
        journal.append([_entry(i, lines=20) for i in range(appended, appended + 50)])
        appended += 50
        if journal.fill().share < 0.5:
            assert "% full" not in caplog.text
    assert journal.is_full
    assert "% full" in caplog.text
    assert journal.fill().bytes <= 2 * 256 * 1024
    journal.remove(journal.read(max_lines=10**9))
    assert journal.is_empty
    assert not journal.is_full
    assert journal.fill().share < 0.5
    journal.close()


def test_sink_writes_state_lines_to_the_state_bucket() -> None:
    raw, state = FakeInflux(), FakeInflux()
    sink = InfluxSink(post=raw, state_post=state)
    result = sink.store([_entry(1, state=2), _entry(2)], give_up=threading.Event())
    assert len(result.stored) == 2
    assert raw.stored == ["m v=1i 10", "m v=2i 20"]
    assert state.stored == ["s v=1i 0", "s v=1i 1"]


def _run_service(
    tmp_path: Path, post: FakeInflux, payloads: list[tuple[bytes, int]], *, max_bytes: int = 10**9
) -> tuple[FakeSource, Callable[[], None], IngestService]:
    settings = load_settings(
        mqtt_topic_root=ROOT,
        ingest_flush_interval_seconds=0.02,
        ingest_stats_interval_seconds=0.1,
        ingest_journal_dir=tmp_path,
        ingest_journal_max_bytes=max_bytes,
    )
    sources: list[FakeSource] = []

    def factory(handoff: Callable[[InboundMessage], None]) -> FakeSource:
        sources.append(FakeSource(handoff))
        return sources[0]

    sink = InfluxSink(post=post, backoff_initial_seconds=0.001, backoff_max_seconds=0.01)
    service = IngestService(
        settings=settings, source_factory=factory, sink=sink, shutdown_grace_seconds=0.2
    )
    thread = threading.Thread(target=service.run)
    thread.start()
    for payload, token in payloads:
        sources[0].handoff(_msg(payload, token))

    def stop() -> None:
        service.request_stop()
        thread.join(10)
        assert not thread.is_alive()

    return sources[0], stop, service


def _wait(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_messages_are_acknowledged_while_influxdb_is_down_and_stored_after_a_restart(
    tmp_path: Path,
) -> None:
    down = FakeInflux(down_for=10**9)
    messages = [(_good(i), 65537 + i) for i in range(50)]
    source, stop, _ = _run_service(tmp_path, down, messages)
    _wait(lambda: len(source.acked) == 50)
    stop()
    assert sorted(source.acked) == [token for _, token in messages]
    assert not any(line.startswith("telemetry,") for line in down.stored)

    up = FakeInflux()
    _, stop_again, service = _run_service(tmp_path, up, [])
    _wait(lambda: sum(line.startswith("telemetry,") for line in up.stored) == 50)
    stop_again()
    assert sum(line.startswith("telemetry,") for line in up.stored) == 50
    assert service.stats.accepted == 50


def test_a_full_journal_stops_acknowledging(tmp_path: Path) -> None:
    down = FakeInflux(down_for=10**9)
    first = [(_good(i), 65537 + i) for i in range(5)]
    source, stop, service = _run_service(tmp_path, down, first, max_bytes=4096)
    _wait(lambda: len(source.acked) == 5)
    assert service.journal.is_full
    for i in range(5, 200):
        source.handoff(_msg(_good(i), 65537 + i))
    time.sleep(0.3)
    stop()
    # Nothing after the journal filled was acknowledged: the broker keeps it.
    assert len(source.acked) == 5


def test_reads_stay_in_order_when_the_writer_falls_behind_the_memory_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ingest.journal.CACHE_MAX_ENTRIES", 10)
    journal = Journal(tmp_path, max_bytes=10**9)
    journal.append([_entry(i) for i in range(8)])
    first = journal.read(max_lines=3)
    assert [r.entry.received_ns for r in first] == [1000, 1001, 1002]
    journal.remove(first)
    journal.append([_entry(i) for i in range(8, 16)])  # 13 held: more than the cache keeps
    ordered = journal.read(max_lines=100)
    assert [r.entry.received_ns for r in ordered] == [1000 + i for i in range(3, 16)]
    journal.remove(ordered)
    journal.append([_entry(16)])  # empty again: served from memory again
    assert [r.entry.received_ns for r in journal.read(max_lines=100)] == [1016]
    journal.close()


def test_a_damaged_journal_is_refused_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "journal.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(JournalError, match="move it aside"):
        Journal(tmp_path, max_bytes=10**9)
    # The lock was released: a repaired journal opens.
    (tmp_path / "journal.sqlite").unlink()
    Journal(tmp_path, max_bytes=10**9).close()


def test_rollup_markers_survive_a_reopen_and_fall_due_by_the_write_time(tmp_path: Path) -> None:
    # A reading of 10:00:30 received in time (10:01:10) but written after an outage: the
    # rollup service may have aggregated its minute meanwhile, so its hour must be marked.
    hour = 10 * 3600 * 10**9
    reading_ns = hour + 30 * 10**9
    received_ns = hour + 70 * 10**9
    entry = to_entry(
        InboundMessage(
            topic=f"{ROOT}/s/d/telemetry",
            payload=f'{{"ts": {reading_ns / 1e9}, "metrics": {{"x": 1}}}}'.encode(),
            received_ns=received_ns,
            ack_token=1,
        ),
        root=ROOT,
        instance="ingest-1",
    )
    marker = f"rollup_dirty,device=d,site=s received_ns={received_ns}i {hour}"
    assert entry.rollup_markers == ((hour + 120 * 10**9, marker),)
    assert marker not in entry.raw_lines(received_ns)
    journal = Journal(tmp_path, max_bytes=10**9)
    journal.append([entry])
    journal.close()
    reopened = Journal(tmp_path, max_bytes=10**9)
    (record,) = reopened.read(max_lines=100)
    reopened.close()
    stored = record.entry
    assert stored.rollup_markers == entry.rollup_markers
    assert stored.raw_lines(hour + 119 * 10**9) == list(entry.lines)
    assert stored.raw_lines(hour + 600 * 10**9) == [*entry.lines, marker]
