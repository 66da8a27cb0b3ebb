"""ingest room: wires the MQTT source, the pipeline, the journal and the InfluxDB sink.

Touches the broker, the journal directory and InfluxDB (through `mqtt_source`, `journal` and
`influx_sink`), and the process's SIGTERM/SIGINT handlers. Three threads do the work:

- paho's network thread receives, converts and puts `InboundMessage`s on a bounded queue;
- the worker (the thread that calls `run`) takes them, decodes, batches, appends each batch to
  the on-disk journal (durable on return) and only then acknowledges its messages. A crash
  before the append leaves them unacknowledged with the broker, which delivers them again;
  after it, the journal has them.
- the journal writer drains the journal to InfluxDB in order, in batches, and removes entries
  only after InfluxDB answered. On a start it first drains what an earlier run left.

When the journal is full (`EDGEWATCH_INGEST_JOURNAL_MAX_BYTES`) the worker stops appending and
acknowledging: the queue fills, and the broker's flow control keeps the rest, as before.

Shutdown (SIGTERM, SIGINT or `request_stop`): stop taking from the broker, journal and
acknowledge what was already taken, let the writer drain for up to `SHUTDOWN_GRACE_SECONDS`,
disconnect, return 0. What InfluxDB did not take stays in the journal for the next start.
"""

from __future__ import annotations

import logging
import queue
import signal
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import Protocol

from edgewatch.contract import REJECT_STORAGE
from edgewatch.models import InboundMessage
from edgewatch.settings import Settings
from ingest.influx_sink import ClientWriter, InfluxSink, StoreResult
from ingest.journal import Journal, JournalRecord
from ingest.mqtt_source import MonotonicNs, MqttSource
from ingest.pipeline import Entry, Pipeline, stats_entry, storage_dead_letter
from ingest.stats import IngestStats, JournalLevel, summary

SHUTDOWN_GRACE_SECONDS = 20.0
MAX_WAIT_SECONDS = 0.5  # longest the worker sleeps, so a stop request is seen promptly
DATA_KINDS = frozenset({"telemetry", "alert", "status"})
# Self-metrics reports waiting for InfluxDB are kept in memory, not journaled (they describe
# the present, and must not queue behind a backlog); an hour's worth at the default interval.
STATS_BACKLOG_MAX = 720
FULL_POLL_SECONDS = 0.05


class Source(Protocol):
    """What the service needs of the broker side (MqttSource, or a fake in tests)."""

    def start(self) -> None: ...
    def stop_taking(self) -> None: ...
    def ack(self, token: int) -> bool: ...
    def stop(self) -> None: ...

    @property
    def subscribed(self) -> threading.Event: ...


class Sink(Protocol):
    def store(self, entries: list[Entry], *, give_up: threading.Event) -> StoreResult: ...


SourceFactory = Callable[[Callable[[InboundMessage], None]], Source]


def ingest_token(settings: Settings) -> str:
    """The ingest's own write token when set, else the general one."""
    if settings.ingest_token is not None:
        return settings.ingest_token.get_secret_value()
    return settings.token_value()


def default_source_factory(
    settings: Settings, clock: Callable[[], int], logger: logging.Logger | None = None
) -> SourceFactory:
    def make(handoff: Callable[[InboundMessage], None]) -> Source:
        return MqttSource(
            host=settings.mqtt_host,
            port=settings.mqtt_connect_port,
            client_id=settings.mqtt_client_id,
            root=settings.mqtt_topic_root,
            handoff=handoff,
            clock=clock,
            share_group=settings.mqtt_share_group,
            session_expiry_seconds=settings.mqtt_session_expiry_seconds,
            keepalive_seconds=settings.mqtt_keepalive_seconds,
            receive_maximum=settings.ingest_queue_max_messages,
            username=settings.mqtt_username,
            password=(
                settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
            ),
            tls_ca=str(settings.mqtt_tls_ca) if settings.mqtt_tls_ca else None,
            logger=logger,
        )

    return make


def default_sink(settings: Settings, logger: logging.Logger | None = None) -> InfluxSink:
    writer = ClientWriter(
        url=settings.influxdb_url,
        org=settings.influxdb_org,
        bucket=settings.influxdb_bucket,
        token=ingest_token(settings),
        timeout_seconds=settings.influxdb_timeout_seconds,
    )
    state_writer = ClientWriter(
        url=settings.influxdb_url,
        org=settings.influxdb_org,
        bucket=settings.influxdb_bucket_state,
        token=ingest_token(settings),
        timeout_seconds=settings.influxdb_timeout_seconds,
    )
    return InfluxSink(post=writer, state_post=state_writer, logger=logger)


def default_journal(settings: Settings, logger: logging.Logger | None = None) -> Journal:
    return Journal(
        settings.ingest_journal_path,
        max_bytes=settings.ingest_journal_max_bytes,
        high_water_share=settings.ingest_journal_warn_share,
        logger=logger,
    )


class IngestService:
    """The running ingest. `run()` blocks until a stop is requested, then returns 0."""

    def __init__(
        self,
        *,
        settings: Settings,
        source_factory: SourceFactory | None = None,
        sink: Sink | None = None,
        journal: Journal | None = None,
        clock: Callable[[], int] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
        shutdown_grace_seconds: float = SHUTDOWN_GRACE_SECONDS,
    ) -> None:
        self._settings = settings
        self._log = logger or logging.getLogger(__name__)
        self._clock = clock or MonotonicNs()
        self._monotonic = monotonic
        self._queue: queue.Queue[InboundMessage] = queue.Queue(
            maxsize=max(1, settings.ingest_queue_max_messages)
        )
        self._journal = journal or default_journal(settings)
        factory = source_factory or default_source_factory(settings, self._clock)
        self._source = factory(self._queue.put)
        self._sink = sink or default_sink(settings)
        self.stats = IngestStats()
        self._pipeline = Pipeline(
            root=settings.mqtt_topic_root,
            instance=settings.ingest_instance,
            stats=self.stats,
            batch_max_lines=settings.ingest_batch_max_lines,
            flush_interval_seconds=settings.ingest_flush_interval_seconds,
        )
        self._stats_backlog: deque[Entry] = deque(maxlen=STATS_BACKLOG_MAX)
        self._stats_lock = threading.Lock()
        self._journaled = threading.Event()  # wakes the writer
        self._stop = threading.Event()
        self._writer_stop = threading.Event()
        self._give_up = threading.Event()
        self._grace = shutdown_grace_seconds
        self._last_report = monotonic()
        self._full_since: float | None = None
        self._writer = threading.Thread(
            target=self._drain_journal, name="ingest-journal-writer", daemon=True
        )

    # ------------------------------------------------------------------ control

    @property
    def subscribed(self) -> threading.Event:
        """Set once the broker confirmed the subscriptions."""
        return self._source.subscribed

    @property
    def journal(self) -> Journal:
        return self._journal

    def request_stop(self) -> None:
        """Ask `run` to finish: safe from any thread and from a signal handler."""
        self._begin_stop()

    def _begin_stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        # The writer may be retrying right now (InfluxDB down): it gets the grace period to
        # drain, then gives up, leaving the rest in the journal for the next start.
        timer = threading.Timer(self._grace, self._give_up.set)
        timer.daemon = True
        timer.start()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._stop.is_set():
            self._log.info("ingest got %s again; still finishing the last batch", name)
            return
        self._log.info("ingest got %s: stopping (journal, acknowledge, disconnect)", name)
        self._begin_stop()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        settings = self._settings
        self._log.info(
            "ingest %s starting: broker %s:%d, influxdb %s bucket %s, batch %d lines / %.2f s, "
            "queue %d, journal %s (max %d bytes)",
            settings.ingest_instance,
            settings.mqtt_host,
            settings.mqtt_connect_port,
            settings.influxdb_url,
            settings.influxdb_bucket,
            settings.ingest_batch_max_lines,
            settings.ingest_flush_interval_seconds,
            settings.ingest_queue_max_messages,
            self._journal.directory,
            self._journal.max_bytes,
        )
        self._writer.start()
        self._source.start()
        stats_interval = max(0.1, settings.ingest_stats_interval_seconds)
        next_report = self._monotonic() + stats_interval
        try:
            while not self._stop.is_set():
                now = self._monotonic()
                deadline = min(self._pipeline.flush_deadline() or next_report, next_report)
                timeout = min(max(deadline - now, 0.0), MAX_WAIT_SECONDS)
                if self._pipeline.is_full():
                    # The journal is full: take nothing more, so the broker keeps the rest.
                    self._stop.wait(min(timeout, FULL_POLL_SECONDS))
                else:
                    self._take(timeout=timeout)
                now = self._monotonic()
                if now >= next_report:
                    self._report()
                    next_report = max(next_report + stats_interval, now)
                if self._pipeline.is_due(now):
                    self._flush()
        finally:
            self._shutdown()
        return 0

    def _take(self, timeout: float) -> None:
        """Wait up to `timeout` for a message, then take what is queued, up to a full batch."""
        try:
            message = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return
        now = self._monotonic()
        self._pipeline.add_message(message, now)
        while not self._pipeline.is_full():
            try:
                message = self._queue.get_nowait()
            except queue.Empty:
                return
            self._pipeline.add_message(message, now)

    def _lag_ms(self) -> float:
        """Age of the oldest message received and not yet stored in InfluxDB."""
        oldest = self._journal.fill().oldest_received_ns
        if oldest is None:
            oldest = self._pipeline.batch.oldest_received_ns()
        if oldest is None:
            # The queue is FIFO: its head is the oldest message not yet in a batch.
            with self._queue.mutex:
                oldest = self._queue.queue[0].received_ns if self._queue.queue else None
        if oldest is None:
            return 0.0
        return max(0.0, (self._clock() - oldest) / 1e6)

    def _journal_level(self) -> JournalLevel:
        fill = self._journal.fill()
        oldest = fill.oldest_received_ns
        return JournalLevel(
            bytes=fill.bytes,
            entries=fill.entries,
            max_bytes=fill.max_bytes,
            fill=fill.share,
            oldest_age_s=0.0 if oldest is None else max(0.0, (self._clock() - oldest) / 1e9),
        )

    def _report(self) -> None:
        now = self._monotonic()
        interval = now - self._last_report
        self._last_report = now
        fields = self.stats.report(
            queue_depth=self._queue.qsize(),
            lag_ms=self._lag_ms(),
            interval_s=interval,
            journal=self._journal_level(),
        )
        with self._stats_lock:
            if len(self._stats_backlog) == self._stats_backlog.maxlen:
                # InfluxDB has been unreachable for a long time: keep the newest reports.
                self._log.warning(
                    "influxdb has not taken a self-metrics report for %d reports; dropping the "
                    "oldest one (data in the journal is kept)",
                    len(self._stats_backlog),
                )
            self._stats_backlog.append(
                stats_entry(self._settings.ingest_instance, fields, self._clock())
            )
        self._journaled.set()
        self._log.info("%s", summary(self._settings.ingest_instance, fields))

    def _flush(self) -> bool:
        """Journal the open batch and acknowledge it; False (batch kept) if the journal is full."""
        if self._journal.is_full and not self._journal.is_empty:
            if self._full_since is None:
                self._full_since = self._monotonic()
                fill = self._journal.fill()
                self._log.error(
                    "ingest journal %s is full (%d of %d bytes, %d entries): not acknowledging "
                    "until InfluxDB takes some; the broker holds what follows",
                    self._journal.directory,
                    fill.bytes,
                    fill.max_bytes,
                    fill.entries,
                )
            return False
        if self._full_since is not None:
            self._log.info(
                "ingest journal has room again after %.1f s; acknowledging",
                self._monotonic() - self._full_since,
            )
            self._full_since = None
        entries = self._pipeline.batch.entries
        if not entries:
            return True
        try:
            self._journal.append(entries)
        except (OSError, sqlite3.Error) as exc:
            # Disk full or gone: the batch stays unacknowledged in memory and is tried again.
            self._log.error(
                "cannot append %d messages to the ingest journal %s: %s; not acknowledging, "
                "retrying",
                len(entries),
                self._journal.directory,
                exc,
            )
            self._stop.wait(1.0)
            return False
        self._pipeline.take()
        self._journaled.set()
        not_acked = self._ack(entries)
        if not_acked:
            self._log.info(
                "%d journaled messages not acknowledged: their connection is gone; the broker "
                "will deliver them again and they overwrite themselves",
                not_acked,
            )
        return True

    def _ack(self, entries: list[Entry]) -> int:
        """Acknowledge journaled entries; returns how many could not be acknowledged."""
        failed = 0
        for entry in entries:
            if entry.ack_token and not self._source.ack(entry.ack_token):
                failed += 1
        return failed

    # ------------------------------------------------------------------ journal writer

    def _take_stats_backlog(self) -> list[Entry]:
        with self._stats_lock:
            entries = list(self._stats_backlog)
            self._stats_backlog.clear()
        return entries

    def _drain_journal(self) -> None:
        """The writer thread: journal -> InfluxDB, oldest first, until told to stop."""
        max_lines = max(1, self._settings.ingest_batch_max_lines)
        while not self._give_up.is_set():
            self._journaled.clear()
            records = self._journal.read(max_lines)
            stats = self._take_stats_backlog()
            if not records and not stats:
                if self._writer_stop.is_set():
                    return
                self._journaled.wait(MAX_WAIT_SECONDS)
                continue
            try:
                stored = self._store_records(records, stats)
            except Exception:
                # A bug or a disk error must not stop the draining for good: log, pause, retry
                # (the records are still in the journal).
                self._log.exception("ingest journal writer failed; retrying in 1 s")
                self._give_up.wait(1.0)
                continue
            if not stored:
                with self._stats_lock:
                    self._stats_backlog.extendleft(reversed(stats))
                return

    def _store_records(self, records: list[JournalRecord], stats: list[Entry]) -> bool:
        """Store one batch and remove it from the journal; False if it was given up."""
        entries = stats + [record.entry for record in records]
        if not self._store(entries, dead_letters_of_refused=True):
            return False
        self._journal.remove(records)
        return True

    def _store(self, entries: list[Entry], *, dead_letters_of_refused: bool) -> bool:
        """Write `entries` until each is stored or dealt with; False if given up at shutdown."""
        started = self._monotonic()
        result: StoreResult = self._sink.store(entries, give_up=self._give_up)
        latency_ms = (self._monotonic() - started) * 1000.0
        if result.stored:
            self.stats.count_write(
                points=sum(e.line_count for e in result.stored), latency_ms=latency_ms
            )
            self.stats.count_accepted(sum(1 for e in result.stored if e.kind in DATA_KINDS))
        if not result.complete:
            return False
        refused_dead_letters: list[Entry] = []
        for entry, reason in result.refused:
            if entry.kind in DATA_KINDS and dead_letters_of_refused:
                self.stats.count_rejected(REJECT_STORAGE)
                self._log.warning(
                    "influxdb refused the message on %s received at %d: %s; dead-lettering it",
                    entry.topic,
                    entry.received_ns,
                    reason,
                )
                refused_dead_letters.append(storage_dead_letter(entry, reason))
            else:
                # A dead letter or a stats point InfluxDB will not take: nothing else can be
                # done with it, and keeping it would block everything behind it.
                self._log.error(
                    "influxdb refused a %s point for %r received at %d: %s; dropping it",
                    entry.kind,
                    entry.topic,
                    entry.received_ns,
                    reason,
                )
        if refused_dead_letters:
            return self._store(refused_dead_letters, dead_letters_of_refused=False)
        return True

    # ------------------------------------------------------------------ shutdown

    def _shutdown(self) -> None:
        self._source.stop_taking()
        self._begin_stop()
        try:
            # What was taken from the broker is journaled and acknowledged before we go.
            now = self._monotonic()
            while True:
                if self._pipeline.is_full() and not self._flush():
                    break
                try:
                    message = self._queue.get_nowait()
                except queue.Empty:
                    break
                self._pipeline.add_message(message, now)
            self._flush()
            self._report()
            # The writer drains until the journal is empty or the grace period is over.
            self._writer_stop.set()
            self._journaled.set()
            self._writer.join()
        finally:
            self._source.stop()
            fill = self._journal.fill()
            if fill.entries:
                self._log.warning(
                    "ingest %s stopped with %d entries (%d bytes) left in the journal %s: the "
                    "next start writes them to InfluxDB",
                    self._settings.ingest_instance,
                    fill.entries,
                    fill.bytes,
                    self._journal.directory,
                )
            self._journal.close()
            self._log.info("ingest %s stopped", self._settings.ingest_instance)
