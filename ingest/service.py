"""ingest room: wires the MQTT source, the pipeline and the InfluxDB sink; threads and signals.

Touches the broker and InfluxDB (through `mqtt_source` and `influx_sink`), and the process's
SIGTERM/SIGINT handlers. Two threads do the work:

- paho's network thread receives, converts and puts `InboundMessage`s on a bounded queue;
- the worker (the thread that calls `run`) takes them, decodes, batches, writes, and only then
  acknowledges. Acknowledging after the write is the whole at-least-once design: a crash at
  any point leaves the unacknowledged messages with the broker, which delivers them again.

Shutdown (SIGTERM, SIGINT or `request_stop`): stop taking from the broker, write what was
already taken, acknowledge it, disconnect, return 0. If InfluxDB cannot take the last batch
within `SHUTDOWN_GRACE_SECONDS`, those messages stay unacknowledged for the next start.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Protocol

from edgewatch.contract import REJECT_STORAGE
from edgewatch.models import InboundMessage
from edgewatch.settings import Settings
from ingest.influx_sink import HttpWriter, InfluxSink, StoreResult
from ingest.mqtt_source import MonotonicNs, MqttSource
from ingest.pipeline import Entry, Pipeline, stats_entry, storage_dead_letter
from ingest.stats import IngestStats, summary

SHUTDOWN_GRACE_SECONDS = 20.0
MAX_WAIT_SECONDS = 0.5  # longest the worker sleeps, so a stop request is seen promptly
DATA_KINDS = frozenset({"telemetry", "alert", "status"})


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
    writer = HttpWriter(
        url=settings.influxdb_url,
        org=settings.influxdb_org,
        bucket=settings.influxdb_bucket,
        token=ingest_token(settings),
        timeout_seconds=settings.influxdb_timeout_seconds,
    )
    state_writer = HttpWriter(
        url=settings.influxdb_url,
        org=settings.influxdb_org,
        bucket=settings.influxdb_bucket_state,
        token=ingest_token(settings),
        timeout_seconds=settings.influxdb_timeout_seconds,
    )
    return InfluxSink(post=writer, post_state=state_writer, logger=logger)


class IngestService:
    """The running ingest. `run()` blocks until a stop is requested, then returns 0."""

    def __init__(
        self,
        *,
        settings: Settings,
        source_factory: SourceFactory | None = None,
        sink: Sink | None = None,
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
        factory = source_factory or default_source_factory(settings, self._clock)
        self._source = factory(self._queue.put)
        self._sink = sink or default_sink(settings)
        self.stats = IngestStats()
        self._pipeline = Pipeline(
            root=settings.mqtt_topic_root,
            stats=self.stats,
            batch_max_lines=settings.ingest_batch_max_lines,
            flush_interval_seconds=settings.ingest_flush_interval_seconds,
        )
        self._stop = threading.Event()
        self._give_up = threading.Event()
        self._grace = shutdown_grace_seconds
        self._last_report = monotonic()

    # ------------------------------------------------------------------ control

    @property
    def subscribed(self) -> threading.Event:
        """Set once the broker confirmed the subscriptions."""
        return self._source.subscribed

    def request_stop(self) -> None:
        """Ask `run` to finish: safe from any thread and from a signal handler."""
        self._begin_stop()

    def _begin_stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        # A write may be retrying right now (InfluxDB down): it gets the grace period to
        # succeed, then gives up, leaving its messages unacknowledged for the broker to keep.
        timer = threading.Timer(self._grace, self._give_up.set)
        timer.daemon = True
        timer.start()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._stop.is_set():
            self._log.info("ingest got %s again; still finishing the last batch", name)
            return
        self._log.info("ingest got %s: stopping (flush, acknowledge, disconnect)", name)
        self._begin_stop()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        settings = self._settings
        self._log.info(
            "ingest %s starting: broker %s:%d, influxdb %s bucket %s, batch %d lines / %.2f s, "
            "queue %d",
            settings.ingest_instance,
            settings.mqtt_host,
            settings.mqtt_connect_port,
            settings.influxdb_url,
            settings.influxdb_bucket,
            settings.ingest_batch_max_lines,
            settings.ingest_flush_interval_seconds,
            settings.ingest_queue_max_messages,
        )
        self._source.start()
        stats_interval = max(0.1, settings.ingest_stats_interval_seconds)
        next_report = self._monotonic() + stats_interval
        try:
            while not self._stop.is_set():
                now = self._monotonic()
                deadline = min(self._pipeline.flush_deadline() or next_report, next_report)
                self._take(timeout=min(max(deadline - now, 0.0), MAX_WAIT_SECONDS))
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
        """Age of the oldest message taken from the broker and not yet acknowledged."""
        oldest = self._pipeline.batch.oldest_received_ns()
        if oldest is None:
            # The queue is FIFO: its head is the oldest message not yet in a batch.
            with self._queue.mutex:
                oldest = self._queue.queue[0].received_ns if self._queue.queue else None
        if oldest is None:
            return 0.0
        return max(0.0, (self._clock() - oldest) / 1e6)

    def _report(self) -> None:
        now = self._monotonic()
        interval = now - self._last_report
        self._last_report = now
        fields = self.stats.report(
            queue_depth=self._queue.qsize(), lag_ms=self._lag_ms(), interval_s=interval
        )
        self._pipeline.add_entry(
            stats_entry(self._settings.ingest_instance, fields, self._clock()), now
        )
        self._log.info("%s", summary(self._settings.ingest_instance, fields))

    def _flush(self) -> None:
        entries = self._pipeline.take()
        if entries:
            self._store(entries, dead_letters_of_refused=True)

    def _store(self, entries: list[Entry], *, dead_letters_of_refused: bool) -> None:
        started = self._monotonic()
        result = self._sink.store(entries, give_up=self._give_up)
        latency_ms = (self._monotonic() - started) * 1000.0
        if result.stored:
            self.stats.count_write(
                points=sum(len(e.lines) for e in result.stored), latency_ms=latency_ms
            )
            self.stats.count_accepted(sum(1 for e in result.stored if e.kind in DATA_KINDS))
        not_acked = self._ack(result.stored)
        if not_acked:
            self._log.info(
                "%d stored messages not acknowledged: their connection is gone; the broker "
                "will deliver them again and they overwrite themselves",
                not_acked,
            )
        if not result.complete:
            self._log.warning(
                "ingest gave up on %d messages at shutdown: left unacknowledged with the broker",
                len(entries) - len(result.stored) - len(result.refused),
            )
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
                self._ack([entry])
        if refused_dead_letters:
            self._store(refused_dead_letters, dead_letters_of_refused=False)

    def _ack(self, entries: list[Entry]) -> int:
        """Acknowledge stored entries; returns how many could not be acknowledged."""
        failed = 0
        for entry in entries:
            if entry.ack_token and not self._source.ack(entry.ack_token):
                failed += 1
        return failed

    def _shutdown(self) -> None:
        self._source.stop_taking()
        self._begin_stop()
        try:
            # What was taken from the broker is written before we go; nothing new comes in.
            now = self._monotonic()
            while True:
                try:
                    message = self._queue.get_nowait()
                except queue.Empty:
                    break
                self._pipeline.add_message(message, now)
                if self._pipeline.is_full():
                    self._flush()
            self._report()
            self._flush()
        finally:
            self._source.stop()
            self._log.info("ingest %s stopped", self._settings.ingest_instance)
