"""The ingest without a network: pipeline, sink (fake HTTP), stats, and the service loop."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edgewatch.models import InboundMessage
from edgewatch.settings import load_settings
from ingest.influx_sink import InfluxSink, WriteResponse, parse_retry_after
from ingest.mqtt_source import MonotonicNs, make_ack_token, split_ack_token, subscription_topics
from ingest.pipeline import (
    Entry,
    Pipeline,
    state_lines_to_write,
    storage_dead_letter,
    to_entry,
)
from ingest.service import IngestService
from ingest.stats import IngestStats, percentile

ROOT = "r"
# Receipt time: half a minute after `_good`'s readings, in time for the rollups (no marker).
NOW = 1_767_225_030_000_000_000


def _msg(payload: bytes, token: int = 1, topic: str = f"{ROOT}/s/d/telemetry") -> InboundMessage:
    return InboundMessage(topic=topic, payload=payload, received_ns=NOW + token, ack_token=token)


def _good(i: int) -> bytes:
    return f'{{"ts": {1767225000 + i}, "metrics": {{"x": {i}}}}}'.encode()


# ---------------------------------------------------------------- pipeline


def test_to_entry_gives_lines_or_a_dead_letter_with_the_same_token() -> None:
    good = to_entry(_msg(_good(1), token=7), root=ROOT, instance="ingest-1")
    assert good.kind == "telemetry"
    assert good.ack_token == 7
    assert good.lines == ("telemetry,device=d,site=s x=1.0 1767225001000000000",)
    bad = to_entry(_msg(b"nope", token=8), root=ROOT, instance="ingest-1")
    assert bad.kind == "dead_letter"
    assert bad.ack_token == 8
    assert bad.lines[0].startswith("dead_letter,code=json ")


def test_storage_dead_letter_carries_influxdb_reason() -> None:
    entry = to_entry(_msg(_good(1), token=3), root=ROOT, instance="ingest-1")
    letter = storage_dead_letter(entry, 'field type conflict: "x"')
    assert letter.ack_token == 3
    assert letter.code == "storage"
    assert 'reason="field type conflict: \\"x\\""' in letter.lines[0]


def test_pipeline_cuts_batches_by_lines_and_by_age() -> None:
    stats = IngestStats()
    # A reading is three lines (telemetry; last-seen and shadow in state), a dead letter one.
    pipeline = Pipeline(
        root=ROOT, instance="ingest-1", stats=stats, batch_max_lines=7, flush_interval_seconds=1.0
    )
    pipeline.add_message(_msg(_good(1), 1), now=10.0)
    assert not pipeline.is_due(10.5)
    assert pipeline.is_due(11.0)
    pipeline.add_message(_msg(_good(2), 2), now=10.6)
    pipeline.add_message(_msg(b"{}", 3), now=10.7)
    assert pipeline.is_full()
    entries = pipeline.take()
    assert [e.ack_token for e in entries] == [1, 2, 3]
    assert not pipeline.is_due(100.0)
    assert stats.received == 3
    assert stats.rejected_by_code == {"schema": 1}


# ---------------------------------------------------------------- sink


class FakeInflux:
    """Answers writes like InfluxDB: refuses lines containing BAD, can be down for N calls."""

    def __init__(self, down_for: int = 0, status_when_down: int = 503) -> None:
        self.down_for = down_for
        self.status_when_down = status_when_down
        self.stored: list[str] = []
        self.calls = 0

    def __call__(self, body: bytes) -> WriteResponse:
        self.calls += 1
        if self.calls <= self.down_for:
            return WriteResponse(status=self.status_when_down, text="down", retry_after_seconds=0)
        lines = gzip.decompress(body).decode().split("\n")
        bad = [line for line in lines if "BAD" in line and not line.startswith("dead_letter")]
        # Like InfluxDB's partial write: the good lines are stored even when some are refused.
        self.stored.extend(line for line in lines if line not in bad)
        if bad:
            return WriteResponse(status=422, text=f"partial write: {len(bad)} dropped")
        return WriteResponse(status=204)


def _entry(name: str, token: int) -> Entry:
    return Entry(
        kind="telemetry",
        lines=(f'm f="{name}" {token}',),
        ack_token=token,
        topic="t",
        received_ns=token,
    )


def _sink(post: Callable[[bytes], WriteResponse]) -> InfluxSink:
    return InfluxSink(post=post, backoff_initial_seconds=0.001, backoff_max_seconds=0.002)


def test_sink_retries_until_influxdb_is_back_and_loses_nothing() -> None:
    fake = FakeInflux(down_for=5)
    entries = [_entry(f"ok{i}", i) for i in range(10)]
    result = _sink(fake).store(entries, give_up=threading.Event())
    assert result.complete
    assert result.stored == entries
    assert fake.calls == 6
    assert len(fake.stored) == 10


def test_sink_retries_auth_errors_instead_of_dead_lettering() -> None:
    fake = FakeInflux(down_for=3, status_when_down=401)
    result = _sink(fake).store([_entry("a", 1)], give_up=threading.Event())
    assert result.refused == []
    assert len(result.stored) == 1


def test_sink_isolates_refused_messages_and_stores_the_rest() -> None:
    fake = FakeInflux()
    entries = [_entry("BAD" if i in (3, 11) else f"ok{i}", i) for i in range(16)]
    result = _sink(fake).store(entries, give_up=threading.Event())
    assert [e.ack_token for e, _ in result.refused] == [3, 11]
    assert all("partial write" in reason for _, reason in result.refused)
    assert sorted(e.ack_token or 0 for e in result.stored) == [
        i for i in range(16) if i not in (3, 11)
    ]


def test_to_entry_fills_the_state_lines_with_the_receipt_time() -> None:
    entry = to_entry(_msg(_good(1), token=7), root=ROOT, instance="ingest-1")
    assert len(entry.state_lines) == 2
    assert entry.state_lines[0].startswith("device_last_seen,device=d,site=s ")
    assert f"received_ns={NOW + 7}i" in entry.state_lines[0]
    assert entry.state_lines[1].startswith("device_shadow,device=d,site=s,writer=ingest-1 ")
    status = to_entry(
        _msg(b'{"state": "offline", "reason": "lwt"}', token=8, topic=f"{ROOT}/s/d/status"),
        root=ROOT,
        instance="ingest-1",
    )
    assert status.state_lines[0].endswith(f" {NOW + 8}")
    assert f"status_received_ns={NOW + 8}i" in status.state_lines[1]
    assert to_entry(_msg(b"nope", token=9), root=ROOT, instance="ingest-1").state_lines == ()


def test_a_retained_status_is_not_taken_as_heard_now() -> None:
    # The broker sends its retained copy again on every subscription: an ingest restart must
    # not make a long-silent device look alive.
    message = InboundMessage(
        topic=f"{ROOT}/s/d/status",
        payload=b'{"state": "online", "ts": 1767225000}',
        received_ns=NOW,
        ack_token=1,
        retained=True,
    )
    lines = to_entry(message, root=ROOT, instance="ingest-1").state_lines
    assert lines[0].endswith(" 1767225000000000000")
    # The broker's copy is the shadow's own writer: it never overwrites what an ingest heard.
    assert lines[1].startswith("device_shadow,device=d,site=s,writer=retained ")


def test_state_lines_to_write_sends_each_overwrite_once() -> None:
    # Three messages of one device in one batch: one last-seen and one shadow line remain,
    # the newest; a status between them is kept whole.
    entries = [
        to_entry(_msg(_good(1), token=1), root=ROOT, instance="ingest-1"),
        to_entry(
            _msg(b'{"state": "online", "model": "m"}', token=2, topic=f"{ROOT}/s/d/status"),
            root=ROOT,
            instance="ingest-1",
        ),
        to_entry(_msg(_good(2), token=3), root=ROOT, instance="ingest-1"),
        to_entry(_msg(_good(3), token=4), root=ROOT, instance="ingest-1"),
    ]
    lines = state_lines_to_write(entries)
    assert [text.split(",", 1)[0] for text in lines] == [
        "device_status",
        "device_shadow",
        "device_last_seen",
        "device_shadow",
    ]
    assert f"received_ns={NOW + 4}i" in lines[2]
    assert f"seen_received_ns={NOW + 4}i" in lines[3]
    assert 'model="m"' in lines[1]


def _state_entry(name: str, token: int) -> Entry:
    return Entry(
        kind="telemetry",
        lines=(f'm f="{name}" {token}',),
        ack_token=token,
        topic="t",
        received_ns=token,
        state_lines=(f's f="{name}" {token}',),
    )


def test_sink_writes_state_lines_to_the_state_bucket_and_retries_it_too() -> None:
    raw, state = FakeInflux(), FakeInflux(down_for=2)
    sink = InfluxSink(
        post=raw, state_post=state, backoff_initial_seconds=0.001, backoff_max_seconds=0.002
    )
    entries = [_state_entry(f"ok{i}", i) for i in range(4)]
    result = sink.store(entries, give_up=threading.Event())
    assert result.complete and result.stored == entries
    assert raw.stored == [f'm f="ok{i}" {i}' for i in range(4)]
    assert state.stored == [f's f="ok{i}" {i}' for i in range(4)]


def test_sink_counts_an_entry_stored_only_when_its_state_lines_are() -> None:
    raw, state = FakeInflux(), FakeInflux()
    sink = InfluxSink(post=raw, state_post=state)
    entries = [_state_entry("BAD" if i == 2 else f"ok{i}", i) for i in range(4)]
    # Raw takes the line (BAD only in the state copy): the state bucket refuses entry 2.
    entries[2] = Entry(
        kind="telemetry",
        lines=('m f="ok2" 2',),
        ack_token=2,
        topic="t",
        received_ns=2,
        state_lines=('s f="BAD" 2',),
    )
    result = sink.store(entries, give_up=threading.Event())
    assert [e.ack_token for e, _ in result.refused] == [2]
    assert sorted(e.ack_token or 0 for e in result.stored) == [0, 1, 3]


def test_sink_gives_up_only_when_told_and_then_reports_incomplete() -> None:
    give_up = threading.Event()
    give_up.set()
    result = _sink(FakeInflux(down_for=10**9)).store([_entry("a", 1)], give_up=give_up)
    assert not result.complete
    assert result.stored == []


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("3", now=0) == 3.0
    assert parse_retry_after(None, now=0) is None
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now=4.0) == 6.0
    assert parse_retry_after("soon", now=0) is None


# ---------------------------------------------------------------- stats and source helpers


def test_stats_report_has_every_field_with_a_stable_type() -> None:
    stats = IngestStats()
    stats.count_received(3)
    stats.count_rejected("json")
    stats.count_write(points=5, latency_ms=4.0)
    stats.count_write(points=5, latency_ms=8.0)
    fields = stats.report(queue_depth=2, lag_ms=12.5, interval_s=5.0)
    assert fields["received"] == 3
    assert fields["rejected"] == 1
    assert fields["rejected_json"] == 1
    assert fields["rejected_storage"] == 0
    assert fields["write_latency_ms_p50"] == 4.0
    assert fields["write_latency_ms_max"] == 8.0
    assert isinstance(fields["queue_depth"], int)
    assert isinstance(fields["lag_ms"], float)
    # Latencies are per interval; counters run since start.
    again = stats.report(queue_depth=0, lag_ms=0.0, interval_s=5.0)
    assert again["write_latency_ms_max"] == 0.0
    assert again["batches"] == 2


def test_percentile() -> None:
    assert percentile([], 0.5) == 0.0
    assert percentile([5.0, 1.0, 3.0], 0.5) == 3.0


def test_ack_tokens_keep_the_connection_generation() -> None:
    assert split_ack_token(make_ack_token(3, 65535)) == (3, 65535)


def test_subscriptions_plain_and_shared() -> None:
    assert subscription_topics("r", None) == ["r/#"]
    assert subscription_topics("r", "g") == ["$share/g/r/#"]


def test_receipt_clock_never_repeats() -> None:
    clock = MonotonicNs(lambda: 5)
    assert [clock(), clock(), clock()] == [5, 6, 7]


# ---------------------------------------------------------------- service loop


class FakeSource:
    def __init__(self, handoff: Callable[[InboundMessage], None]) -> None:
        self.handoff = handoff
        self.acked: list[int] = []
        self.subscribed = threading.Event()
        self.stopped = False

    def start(self) -> None:
        self.subscribed.set()

    def stop_taking(self) -> None:
        pass

    def ack(self, token: int) -> bool:
        self.acked.append(token)
        return True

    def stop(self) -> None:
        self.stopped = True


class FakeSink:
    def __init__(self) -> None:
        self.inner = FakeInflux()
        self.sink = _sink(self.inner)

    def store(self, entries: list[Entry], *, give_up: threading.Event):  # type: ignore[no-untyped-def]
        return self.sink.store(entries, give_up=give_up)


def test_service_acks_after_store_dead_letters_and_reports_when_idle(tmp_path: Path) -> None:
    settings = load_settings(
        mqtt_topic_root=ROOT,
        ingest_flush_interval_seconds=0.05,
        ingest_stats_interval_seconds=0.1,
        ingest_journal_dir=tmp_path,
    )
    sources: list[FakeSource] = []
    sink = FakeSink()

    def factory(handoff: Callable[[InboundMessage], None]) -> FakeSource:
        sources.append(FakeSource(handoff))
        return sources[0]

    service = IngestService(settings=settings, source_factory=factory, sink=sink)
    thread = threading.Thread(target=service.run)
    thread.start()
    try:
        source = sources[0]
        source.handoff(_msg(_good(1), 65537))
        source.handoff(_msg(b"[]", 65538))
        # "BAD" in a field makes the fake InfluxDB refuse that one message.
        source.handoff(
            _msg(
                b'{"type":"x","severity":"info","message":"BAD"}',
                65539,
                topic=f"{ROOT}/s/d/alert",
            )
        )
        deadline = time.monotonic() + 10
        while len(source.acked) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # at least one idle stats interval
    finally:
        service.request_stop()
        thread.join(10)
    assert not thread.is_alive()
    assert sorted(source.acked) == [65537, 65538, 65539]
    assert source.stopped
    stored = sink.inner.stored
    assert any(line.startswith("telemetry,") for line in stored)
    assert any(line.startswith("dead_letter,code=schema") for line in stored)
    assert any(line.startswith("dead_letter,code=storage") for line in stored)
    assert not any(line.startswith("alert_event") for line in stored)
    assert any(line.startswith("ingest_stats,instance=") for line in stored)
    assert service.stats.accepted == 1
    assert service.stats.rejected_by_code == {"schema": 1, "storage": 1}
