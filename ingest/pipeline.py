"""ingest room: inbound messages -> decoded -> lines of line protocol, grouped into batches.

Pure apart from the stats it counts into: no network, no threads, no clock of its own (times
are passed in), so batching and dead-lettering are unit-tested without a broker or InfluxDB.
Decoding is `edgewatch.contract.decode_message`, lines are `edgewatch.schema`'s.

An `Entry` is what one MQTT message became: all its lines (and the lines it adds to the
state bucket, which outlives raw retention) and the one token that acknowledges it. Batches
hold whole entries, so a message is stored (and acknowledged) whole or not at all, and
InfluxDB's refusal of a line can be traced back to the message that made it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from edgewatch.contract import (
    REJECT_STORAGE,
    decode_message,
    internal_rejection,
    payload_excerpt,
)
from edgewatch.models import DeviceMessage, InboundMessage, Rejected, Telemetry
from edgewatch.schema import (
    SHADOW_RETAINED_WRITER,
    dead_letter_line,
    ingest_stats_line,
    message_lines,
    rollup_markers,
    state_lines,
)
from ingest.stats import IngestStats

EntryKind = Literal["telemetry", "alert", "status", "dead_letter", "ingest_stats"]


@dataclass(frozen=True, slots=True)
class Entry:
    """The lines one message (or one self-metrics report) becomes, and its ack token.

    `lines` go to the raw bucket, `state_lines` to the state bucket (edgewatch.schema.state_lines);
    the message counts as stored only when both are. `ack_token` is None for what did not come
    from the broker (the stats heartbeat); the journal writer never acknowledges (that happened
    when the entry was journaled). `payload` is kept so that a message InfluxDB refuses can
    still be dead-lettered. `rollup_markers` are (time, line) pairs: each `rollup_dirty`
    line goes with the raw lines once its time has come when they are written
    (`edgewatch.schema.rollup_markers`, `raw_lines`).
    """

    kind: EntryKind
    lines: tuple[str, ...]
    ack_token: int | None
    topic: str
    received_ns: int
    payload: bytes = b""
    code: str | None = None
    state_lines: tuple[str, ...] = ()
    rollup_markers: tuple[tuple[int, str], ...] = ()

    @property
    def line_count(self) -> int:
        # Markers are not counted: few messages are written late enough to carry them.
        return len(self.lines) + len(self.state_lines)

    def raw_lines(self, written_ns: int) -> list[str]:
        """The raw bucket's lines when written at `written_ns`: the data, then the markers of
        the hours whose readings are late by then (so a marker never precedes its data)."""
        due = [marker for at_ns, marker in self.rollup_markers if written_ns >= at_ns]
        return [*self.lines, *due]

    @property
    def is_dead_letter(self) -> bool:
        return self.kind == "dead_letter"


def dead_letter_entry(rejected: Rejected, *, ack_token: int | None, payload: bytes) -> Entry:
    """A dead letter that acknowledges the rejected message once it is stored."""
    return Entry(
        kind="dead_letter",
        lines=(dead_letter_line(rejected),),
        ack_token=ack_token,
        topic=rejected.topic,
        received_ns=rejected.received_ns,
        payload=payload,
        code=rejected.code,
    )


def to_entry(message: InboundMessage, *, root: str, instance: str) -> Entry:
    """Decode one inbound message into an entry: its data lines, or one dead-letter line.

    `instance` is this ingest's name: the device shadow's writer for what it hears live.
    """
    decoded = decode_message(
        message.topic, message.payload, message.received_ns, root, message.content_type
    )
    if isinstance(decoded, Rejected):
        return dead_letter_entry(decoded, ack_token=message.ack_token, payload=message.payload)
    try:
        lines = tuple(message_lines(decoded))
        writer = SHADOW_RETAINED_WRITER if message.retained else instance
        state = tuple(state_lines(decoded, heard_ns(decoded, message), writer=writer))
        markers = (
            tuple(rollup_markers(decoded, message.received_ns))
            if isinstance(decoded, Telemetry)
            else ()
        )
    except Exception as exc:
        # The decoder should make this impossible; if it ever is not, the message is
        # dead-lettered (code `internal`) instead of stopping the ingest.
        rejected = internal_rejection(
            message.topic, message.payload, message.received_ns, exc, "line protocol"
        )
        return dead_letter_entry(rejected, ack_token=message.ack_token, payload=message.payload)
    return Entry(
        kind=decoded.kind,
        lines=lines,
        ack_token=message.ack_token,
        topic=message.topic,
        received_ns=message.received_ns,
        payload=message.payload,
        state_lines=state,
        rollup_markers=markers,
    )


def state_lines_to_write(entries: Iterable[Entry]) -> list[str]:
    """The state bucket's lines of `entries`, each overwrite written once.

    A telemetry entry's state lines are all overwrites (its hour's `device_last_seen` point
    and the device shadow's seen fields, integers only, edgewatch.schema.state_lines): of
    several for one series and time in a batch only the last stands in InfluxDB, so only
    the last is sent. A backlog of 5,000 messages from 100 devices then writes 200 such
    lines, not 10,000. Statuses and alert events are sent as they are, in order.
    """
    kept: list[str] = []
    overwrites: dict[tuple[str, str], str] = {}
    for entry in entries:
        if entry.kind != "telemetry":
            kept.extend(entry.state_lines)
            continue
        for text in entry.state_lines:
            # Integer fields only, so the last two spaces split series, fields and time.
            series, _fields, ts = text.rsplit(" ", 2)
            overwrites.pop((series, ts), None)  # re-inserted last: the newest keeps its place
            overwrites[(series, ts)] = text
    return [*kept, *overwrites.values()]


def heard_ns(decoded: DeviceMessage, message: InboundMessage) -> int:
    """When the device was heard: the receipt time, except for a retained message.

    A retained message (a status, typically) is the broker's copy, sent again whenever the
    ingest's subscription is new (first start, a replica added, a session that expired): its
    receipt time says nothing about when the device sent it, and taken as a sign of life it
    would make a long-silent device look ONLINE. Its own time, never later than the receipt,
    is then the best we know.
    """
    if message.retained:
        if isinstance(decoded, Telemetry):
            own_ns = max(reading.ts_ns for reading in decoded.readings)
        else:
            own_ns = decoded.ts_ns
        return min(message.received_ns, own_ns)
    return message.received_ns


def storage_dead_letter(entry: Entry, reason: str) -> Entry:
    """The dead letter for a message InfluxDB refused, with InfluxDB's text as the reason."""
    rejected = Rejected(
        topic=entry.topic,
        code=REJECT_STORAGE,
        reason=reason,
        payload_excerpt=payload_excerpt(entry.payload),
        received_ns=entry.received_ns,
    )
    return dead_letter_entry(rejected, ack_token=entry.ack_token, payload=entry.payload)


def stats_entry(instance: str, fields: dict[str, float | int], ts_ns: int) -> Entry:
    return Entry(
        kind="ingest_stats",
        lines=(ingest_stats_line(instance, fields, ts_ns),),
        ack_token=None,
        topic="",
        received_ns=ts_ns,
    )


@dataclass(slots=True)
class Batch:
    """Entries waiting to be written together."""

    entries: list[Entry] = field(default_factory=list)
    line_count: int = 0
    opened_at: float | None = None  # monotonic seconds of the first entry

    def __len__(self) -> int:
        return len(self.entries)

    def oldest_received_ns(self) -> int | None:
        received = [e.received_ns for e in self.entries if e.ack_token is not None]
        return min(received, default=None)


class Pipeline:
    """Decodes messages into entries and cuts batches by size or age.

    A batch is due when it holds `batch_max_lines` lines, or when its first entry is
    `flush_interval_seconds` old; one message larger than the limit makes a batch of its own
    (a message is never split across batches).
    """

    def __init__(
        self,
        *,
        root: str,
        instance: str,
        stats: IngestStats,
        batch_max_lines: int,
        flush_interval_seconds: float,
    ) -> None:
        self._root = root
        self._instance = instance
        self._stats = stats
        self._max_lines = max(1, batch_max_lines)
        self._flush_interval = flush_interval_seconds
        self._batch = Batch()

    @property
    def batch(self) -> Batch:
        return self._batch

    def add_message(self, message: InboundMessage, now: float) -> Entry:
        """Decode `message`, count it, and put its entry in the open batch."""
        entry = to_entry(message, root=self._root, instance=self._instance)
        self._stats.count_received()
        if entry.is_dead_letter and entry.code is not None:
            self._stats.count_rejected(entry.code)
        self.add_entry(entry, now)
        return entry

    def add_entry(self, entry: Entry, now: float) -> None:
        if self._batch.opened_at is None:
            self._batch.opened_at = now
        self._batch.entries.append(entry)
        self._batch.line_count += entry.line_count

    def is_full(self) -> bool:
        return self._batch.line_count >= self._max_lines

    def is_due(self, now: float) -> bool:
        """Full, or old enough to flush."""
        if not self._batch.entries:
            return False
        if self.is_full():
            return True
        opened = self._batch.opened_at
        return opened is not None and now - opened >= self._flush_interval

    def flush_deadline(self) -> float | None:
        """Monotonic time at which the open batch is due by age (None: nothing open)."""
        if self._batch.opened_at is None:
            return None
        return self._batch.opened_at + self._flush_interval

    def take(self) -> list[Entry]:
        """The open batch's entries; a new batch opens with the next entry."""
        entries = self._batch.entries
        self._batch = Batch()
        return entries
