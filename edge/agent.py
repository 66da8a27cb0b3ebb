"""edge room: the edge agent, a store-and-forward publisher for one device.

Flow: `record()` stamps a reading with the device clock (`ts`, in nanoseconds, unique and
increasing per device: see `Spool.stamp`) and the next `seq`, runs the local alert rules and
the deadband filter, and writes what is left to the spool; `pump()` takes link events
(connected, disconnected, PUBACK) off the queue the transport fills and sends the oldest
unsent spool messages while connected: one reading alone, several as a `{"batch": [...]}` (at
most 1000 readings and `batch_max_bytes`), an alert on its own.

Linger: a reading recorded while the agent keeps up waits up to `linger_s` (already on disk)
for the readings after it, so that they go out as one batch message instead of one message
each; a full batch goes at once, and so does everything ahead of an alert (an alert is never
held, and the spool's order is kept). Readings left from a previous run or spooled during an
outage are late already and go at once; `stop()` flushes without lingering. With `gzip` a
telemetry message or an alert goes gzip-compressed, announced by the MQTT v5 content type
`application/json+gzip` (contract v1.1), whenever that makes it smaller.

A message leaves the spool only when its PUBACK arrived, so a broker outage, an agent
restart or a crash in between replays it, with its original `ts` and `seq`, in order. A
PUBACK that refuses the message for a reason outside it (not authorised, quota, ...) keeps it
and retries with backoff; only a refusal that is the message's own fault deletes it
(edge/refusal.py). Payloads are the core encoder's (`edgewatch.encode`).

On every connect the agent publishes its birth (retained `online` status with interval_s and
what it knows of itself); its last will is the retained `{"state": "offline", "reason":
"lwt"}`; `stop()` publishes `offline` with reason `shutdown` and disconnects cleanly.

Threading: everything here runs on the caller's thread; only the transport's callbacks run
elsewhere and they only put events on a queue. The queue is unbounded but cannot grow past a
few connection events plus one acknowledgement per message in flight (`max_in_flight`).

Touches: the broker (through a `Transport`), its spool file.
"""

from __future__ import annotations

import logging
import queue
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edge.filters import (
    AlertRule,
    AlertRulesState,
    DeadbandConfig,
    DeadbandState,
    deadband,
    evaluate_alerts,
)
from edge.refusal import Refusal, classify_puback, describe_code, retry_delay_seconds
from edge.spool import Spool, SpoolItem
from edge.transport import (
    Acked,
    Connected,
    Disconnected,
    LinkConfig,
    LinkEvent,
    Transport,
    TransportFactory,
)
from edgewatch.contract import (
    DEFAULT_INTERVAL_SECONDS,
    MAX_BATCH_READINGS,
    MAX_METRICS_PER_READING,
    MAX_PAYLOAD_BYTES,
    is_valid_name,
    topic_for,
)
from edgewatch.encode import (
    BATCH_OVERHEAD_BYTES,
    alert_body,
    batch_payload,
    birth_body,
    encode_payload,
    gzip_if_smaller,
    last_will_payload,
    offline_body,
)
from edgewatch.models import DeviceInfo, MetricValue
from edgewatch.settings import DEFAULT_EDGE_LINGER_SECONDS, DEFAULT_TOPIC_ROOT

DEFAULT_BATCH_MAX_BYTES = 128 * 1024
DEFAULT_MAX_IN_FLIGHT = 8
SHUTDOWN_TIMEOUT_SECONDS = 5.0
METRIC_SPOOL_DEPTH = "spool_depth"
METRIC_SPOOL_DROPPED = "spool_dropped"
METRIC_PUBLISH_REFUSED = "publish_refused"
METRIC_PUBLISH_RETRIES = "publish_retries"


@dataclass(slots=True)
class AgentStats:
    """Counters since the agent started (not persisted)."""

    recorded: int = 0
    filtered_out: int = 0
    spooled_readings: int = 0
    spooled_alerts: int = 0
    messages_published: int = 0
    payload_bytes_published: int = 0  # as sent: after gzip where it was used
    gzipped: int = 0
    batches_published: int = 0
    largest_batch: int = 0
    acked: int = 0
    refused: int = 0  # deleted: the broker refused them for their own fault
    retried: int = 0  # kept: refused for a reason outside the message, sent again later
    connects: int = 0


@dataclass(frozen=True, slots=True)
class _InFlight:
    first_id: int
    last_id: int
    count: int


class EdgeAgent:
    """One device's agent. Not thread-safe: call it from one thread."""

    def __init__(
        self,
        *,
        site: str,
        device: str,
        spool: Spool,
        transport_factory: TransportFactory,
        topic_root: str = DEFAULT_TOPIC_ROOT,
        info: DeviceInfo | None = None,
        deadband_config: DeadbandConfig | None = None,
        alert_rules: tuple[AlertRule, ...] = (),
        clock_ns: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        batch_max_bytes: int = DEFAULT_BATCH_MAX_BYTES,
        linger_s: float = DEFAULT_EDGE_LINGER_SECONDS,
        gzip: bool = False,
        client_id: str | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        for label, name in (("site", site), ("device", device)):
            if not is_valid_name(name):
                raise ValueError(f"{label} {name!r} must match ^[A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}$")
        if not 0 < batch_max_bytes < MAX_PAYLOAD_BYTES:
            raise ValueError(f"batch_max_bytes must be below {MAX_PAYLOAD_BYTES}")
        if not linger_s >= 0:
            raise ValueError("linger_s must be 0 or more")
        self.site = site
        self.device = device
        self.info = info or DeviceInfo()
        self.stats = AgentStats()
        self._spool = spool
        self._factory = transport_factory
        self._root = topic_root
        self._deadband = deadband_config
        self._deadband_state = DeadbandState()
        self._rules = alert_rules
        # Persisted: an alert raised before a restart is still raised after it, so the first
        # reading back under the threshold clears it.
        self._rules_state = AlertRulesState(raised=spool.raised_alerts())
        self._clock_ns = clock_ns
        self._monotonic = monotonic
        self._max_in_flight = max_in_flight
        self._batch_max_bytes = batch_max_bytes
        self._linger_s = linger_s
        self._gzip = gzip
        # (spool id, monotonic time recorded) of the readings of the last linger: a reading
        # not in here is due (older, or spooled before this process started).
        self._recorded_at: deque[tuple[int, float]] = deque()
        self._hold_until: float | None = None
        self._flushing = False
        self._client_id = client_id or re.sub(
            r"[^A-Za-z0-9_.-]", "_", f"edgewatch-{topic_root}-{site}-{device}"
        )
        self._log = logger or logging.getLogger(__name__)
        self._events: queue.SimpleQueue[tuple[int, LinkEvent]] = queue.SimpleQueue()
        self._generation = 0
        self._transport: Transport | None = None
        self._connected = False
        self._link_was_up = False
        self._in_flight: dict[int, _InFlight] = {}
        self._cursor = 0
        # Backoff after a refusal that is not the message's fault (see edge/refusal.py).
        self._refusals_in_a_row = 0
        self._retry_at: float | None = None
        self._refusal_logged: str | None = None
        self._topics = {
            kind: topic_for(topic_root, site, device, kind)
            for kind in ("telemetry", "alert", "status")
        }

    # ------------------------------------------------------------------ properties

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def running(self) -> bool:
        return self._transport is not None

    @property
    def spool_depth(self) -> int:
        return self._spool.depth

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def topic(self, kind: str) -> str:
        return self._topics[kind]

    @property
    def linger_seconds(self) -> float:
        """The linger in force: `linger_s`, but never longer than the device's interval."""
        return min(self._linger_s, self.info.interval_s or DEFAULT_INTERVAL_SECONDS)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Connect in the background; the birth goes out once the broker accepted us.

        Starting after `abort()` is a restart: whatever was in flight on the old link is sent
        again from the spool, because the old link's in-memory resend queue is gone.
        """
        if self._transport is not None:
            return
        self._generation += 1
        generation = self._generation
        self._in_flight.clear()
        self._cursor = 0
        self._retry_at = None
        self._connected = False
        self._link_was_up = False
        self._flushing = False

        def sink(event: LinkEvent) -> None:
            self._events.put((generation, event))

        transport = self._factory(
            LinkConfig(
                client_id=self._client_id,
                will_topic=self._topics["status"],
                will_payload=last_will_payload(),
                sink=sink,
            )
        )
        self._transport = transport
        transport.start()
        self._log.info(
            "agent %s/%s starting: %d messages in the spool",
            self.site,
            self.device,
            self.spool_depth,
        )

    def stop(self, *, timeout_s: float = SHUTDOWN_TIMEOUT_SECONDS) -> None:
        """Flush what the link takes within `timeout_s`, say offline (shutdown), disconnect.

        A link still connecting is waited for (`echo ... | edgewatch agent` reaches EOF before
        the broker answered); a link that was up and dropped is not. What is not acknowledged
        by the deadline stays in the spool for the next start.
        """
        transport = self._transport
        if transport is None:
            return
        deadline = self._monotonic() + timeout_s
        self._flushing = True  # what lingers goes now
        while (
            (self._connected or not self._link_was_up)
            and self._spool.depth
            and self._monotonic() < deadline
        ):
            self.pump(timeout_s=min(0.1, max(0.0, deadline - self._monotonic())))
        if self._connected:
            body = offline_body(ts_ns=self._clock_ns())
            token = transport.publish(self._topics["status"], encode_payload(body), retain=True)
            if token is not None:
                transport.wait_published(token, max(0.1, deadline - self._monotonic()))
        transport.stop(timeout_s=max(0.1, deadline - self._monotonic()))
        self._transport = None
        self._connected = False
        self._log.info(
            "agent %s/%s stopped: %d messages left in the spool",
            self.site,
            self.device,
            self._spool.depth,
        )

    def abort(self) -> None:
        """Drop the link without a clean shutdown: the broker publishes the last will.

        Used by the simulator for crashes and network outages. The spool keeps everything.
        """
        if self._transport is None:
            return
        self._transport.abort()
        self._transport = None
        self._connected = False
        self._log.warning("agent %s/%s link aborted (last will)", self.site, self.device)

    # ------------------------------------------------------------------ input

    def record(
        self,
        metrics: Mapping[str, MetricValue],
        *,
        ts_ns: int | None = None,
        seq: int | None = None,
    ) -> bool:
        """Take one reading. Returns whether it was spooled (False: the deadband dropped it).

        Without `ts_ns` the reading is stamped now, in nanoseconds, and strictly after every
        earlier reading of this device (the spool keeps the last stamp across restarts): a
        reading's time is its identity in the store, so two readings never share one.
        Alert rules see every reading, filtered or not, so a short spike still raises.
        """
        if ts_ns is None:
            ts_ns = self._spool.stamp(self._clock_ns())
        self.stats.recorded += 1
        before = self._rules_state
        self._rules_state, transitions = evaluate_alerts(self._rules, before, metrics)
        to_send: Mapping[str, MetricValue] = metrics
        if self._deadband is not None:
            self._deadband_state, to_send = deadband(
                self._deadband, self._deadband_state, ts_ns, metrics
            )
        spooled = False
        if to_send:
            self._spool_with_self_metrics(dict(to_send), ts_ns=ts_ns, seq=seq)
            self.stats.spooled_readings += 1
            spooled = True
        else:
            self.stats.filtered_out += 1
        for transition in transitions:
            self.alert(
                transition.rule.type,
                transition.rule.severity,
                state=transition.state,
                message=transition.message,
                value=transition.value,
                ts_ns=ts_ns,
            )
            self._log.info(
                "agent %s/%s alert %s %s: %s",
                self.site,
                self.device,
                transition.rule.type,
                transition.state,
                transition.message,
            )
        if self._rules_state.raised != before.raised:
            self._spool.save_raised_alerts(self._rules_state.raised)
        return spooled

    def self_metrics(self) -> dict[str, MetricValue]:
        """The agent's own health, sent with its readings: a dashboard sees the backlog grow
        while the link is down, and running totals of what was lost or retried survive the
        loss of any single reading."""
        return {
            METRIC_SPOOL_DEPTH: float(self._spool.depth),
            METRIC_SPOOL_DROPPED: float(self._spool.dropped_total),
            METRIC_PUBLISH_REFUSED: float(self._spool.refused_total),
            METRIC_PUBLISH_RETRIES: float(self.stats.retried),
        }

    def _spool_with_self_metrics(
        self, metrics: dict[str, MetricValue], *, ts_ns: int, seq: int | None
    ) -> None:
        # The device's own metrics of these names win; ours never push a reading past the
        # contract's limit (a reading of 257 metrics is rejected, and with it a whole replay
        # batch): when they do not fit they go out as a reading of their own.
        own = {k: v for k, v in self.self_metrics().items() if k not in metrics}
        if len(metrics) + len(own) <= MAX_METRICS_PER_READING:
            item = self._spool.append_reading({**metrics, **own}, ts_ns=ts_ns, seq=seq)
            self._note_recorded(item.id)
            return
        item = self._spool.append_reading(metrics, ts_ns=ts_ns, seq=seq)
        self._note_recorded(item.id)
        if own:
            self._spool.append_reading(own, ts_ns=self._spool.stamp(self._clock_ns()))

    def _note_recorded(self, spool_id: int) -> None:
        now = self._monotonic()
        linger = self.linger_seconds
        # Only the last linger's readings can still be held: the deque stays that short.
        while self._recorded_at and self._recorded_at[0][1] + linger <= now:
            self._recorded_at.popleft()
        if linger > 0:
            self._recorded_at.append((spool_id, now))

    def alert(
        self,
        alert_type: str,
        severity: str,
        *,
        state: str = "raised",
        message: str = "",
        value: float | None = None,
        ts_ns: int | None = None,
    ) -> None:
        """Queue one alert event (it goes through the spool like a reading)."""
        if ts_ns is None:
            ts_ns = self._spool.stamp(self._clock_ns())
        body = alert_body(
            alert_type, severity, ts_ns=ts_ns, state=state, message=message, value=value
        )
        self._spool.append_alert(body, ts_ns=ts_ns)
        self.stats.spooled_alerts += 1

    # ------------------------------------------------------------------ the loop

    def pump(self, timeout_s: float = 0.0) -> None:
        """Handle link events (waiting up to `timeout_s` for the first) and send what we can.

        The wait ends early when lingering readings fall due.
        """
        if timeout_s > 0 and self._hold_until is not None:
            timeout_s = min(timeout_s, max(0.0, self._hold_until - self._monotonic()))
        try:
            first = self._events.get(timeout=timeout_s) if timeout_s > 0 else None
        except queue.Empty:
            first = None
        if first is not None:
            self._handle(*first)
        while True:
            try:
                generation, event = self._events.get_nowait()
            except queue.Empty:
                break
            self._handle(generation, event)
        self._drain()

    def _handle(self, generation: int, event: LinkEvent) -> None:
        if generation != self._generation or self._transport is None:
            # From a link we already dropped: its tokens mean nothing to the new one.
            return
        if isinstance(event, Connected):
            self._connected = True
            self._link_was_up = True
            self.stats.connects += 1
            self._publish_birth()
            self._log.info(
                "agent %s/%s connected: %d messages to replay",
                self.site,
                self.device,
                self._spool.depth - sum(f.count for f in self._in_flight.values()),
            )
        elif isinstance(event, Disconnected):
            if self._connected:
                self._log.warning(
                    "agent %s/%s disconnected (%s): spooling until the link returns",
                    self.site,
                    self.device,
                    event.reason,
                )
            self._connected = False
        elif isinstance(event, Acked):
            flight = self._in_flight.pop(event.token, None)
            if flight is None:
                return  # a status message: nothing of ours to remove
            self._handle_ack(flight, event)

    def _handle_ack(self, flight: _InFlight, event: Acked) -> None:
        refusal = classify_puback(event.code, ok=event.ok)
        if refusal is Refusal.NONE:
            self._spool.remove_range(flight.first_id, flight.last_id)
            self.stats.acked += flight.count
            if self._refusals_in_a_row:
                self._log.warning(
                    "agent %s/%s: the broker accepts publishes again after %d refusal(s)",
                    self.site,
                    self.device,
                    self._refusals_in_a_row,
                )
            self._refusals_in_a_row = 0
            self._retry_at = None
            self._refusal_logged = None
        elif refusal is Refusal.DROP:
            # Sending it again would get the same answer and block the spool behind it.
            self._spool.remove_range(flight.first_id, flight.last_id, refused=True)
            self.stats.refused += flight.count
            self._log.error(
                "agent %s/%s: broker refused %d message(s) for their own fault (%s); dropped them",
                self.site,
                self.device,
                flight.count,
                describe_code(event.code),
            )
        else:
            # Not the message's fault (an account or ACL change, a quota, a busy broker):
            # keep it, and send it again, oldest first, once the backoff has passed.
            self.stats.retried += flight.count
            self._cursor = min(self._cursor, flight.first_id - 1)
            now = self._monotonic()
            if self._retry_at is not None and now < self._retry_at:
                return  # another message of the same round: the backoff is already set
            self._refusals_in_a_row += 1
            delay = retry_delay_seconds(self._refusals_in_a_row)
            self._retry_at = now + delay
            described = describe_code(event.code)
            if described != self._refusal_logged:
                self._refusal_logged = described
                self._log.error(
                    "agent %s/%s: broker refused %d message(s) (%s), not their fault: kept in"
                    " the spool, retrying with backoff (first in %.0f s)",
                    self.site,
                    self.device,
                    flight.count,
                    described,
                    delay,
                )

    def update_info(self, info: DeviceInfo) -> None:
        """What the device says about itself changed (a new model version): say it again.

        The birth is retained, so the broker keeps the new one; while disconnected it goes
        out with the next connect, as every birth does.
        """
        self.info = info
        if self.connected and self._transport is not None:
            self._publish_birth()

    def _publish_birth(self) -> None:
        assert self._transport is not None
        body = birth_body(self.info, ts_ns=self._clock_ns())
        self._transport.publish(self._topics["status"], encode_payload(body), retain=True)

    def _drain(self) -> None:
        self._hold_until = None
        if self._retry_at is not None and self._monotonic() < self._retry_at:
            return
        while (
            self._transport is not None
            and self._connected
            and len(self._in_flight) < self._max_in_flight
        ):
            items = self._unsent(self._spool.peek(after_id=self._cursor, limit=MAX_BATCH_READINGS))
            if not items:
                return
            chunk, topic, payload, closed = self._next_message(items)
            if not closed and not self._flushing:
                due = self._linger_deadline(chunk[0].id)
                if due is not None and self._monotonic() < due:
                    self._hold_until = due
                    return
            content_type = None
            if self._gzip:
                payload, content_type = gzip_if_smaller(payload)
            token = self._transport.publish(topic, payload, content_type=content_type)
            if token is None:
                return
            self._in_flight[token] = _InFlight(chunk[0].id, chunk[-1].id, len(chunk))
            self._cursor = chunk[-1].id
            self.stats.messages_published += 1
            self.stats.payload_bytes_published += len(payload)
            if content_type is not None:
                self.stats.gzipped += 1
            if len(chunk) > 1:
                self.stats.batches_published += 1
                self.stats.largest_batch = max(self.stats.largest_batch, len(chunk))

    def _unsent(self, items: list[SpoolItem]) -> list[SpoolItem]:
        """`items` up to the first one still in flight: after a rewind for a retry, messages
        sent after the refused one may still await their PUBACK."""
        for index, item in enumerate(items):
            if any(f.first_id <= item.id <= f.last_id for f in self._in_flight.values()):
                return items[:index]
        return items

    def _linger_deadline(self, first_id: int) -> float | None:
        """When the reading with this spool id is due (None: now, it is not a recent one)."""
        while self._recorded_at and self._recorded_at[0][0] < first_id:
            self._recorded_at.popleft()
        if self._recorded_at and self._recorded_at[0][0] == first_id:
            return self._recorded_at[0][1] + self.linger_seconds
        return None

    def _next_message(self, items: list[SpoolItem]) -> tuple[list[SpoolItem], str, bytes, bool]:
        """The next message: its spool items, topic, payload, and whether it is closed (an
        alert, or a batch that nothing more can join: full, or followed by an alert)."""
        head = items[0]
        if head.kind == "alert":
            return [head], self._topics["alert"], head.text.encode("utf-8"), True
        chunk: list[SpoolItem] = []
        size = BATCH_OVERHEAD_BYTES
        closed = False
        for item in items:
            if item.kind != "telemetry" or len(chunk) >= MAX_BATCH_READINGS:
                closed = True
                break
            if chunk and size + item.size + 1 > self._batch_max_bytes:
                closed = True
                break
            chunk.append(item)
            size += item.size + 1
        closed = closed or len(chunk) >= MAX_BATCH_READINGS
        topic = self._topics["telemetry"]
        if len(chunk) == 1:
            return chunk, topic, head.text.encode("utf-8"), closed
        return chunk, topic, batch_payload(item.text for item in chunk), closed
