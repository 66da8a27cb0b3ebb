"""edge room: the agent's disk-backed outbox (store-and-forward), one SQLite file per device.

Every message the agent means to send is written here first and leaves only after the broker
acknowledged its publish (PUBACK), so readings taken while the broker is unreachable survive
agent restarts and are replayed in their original order with their original `ts` and `seq`.
The per-device `seq` counter lives here too, in the same transaction as the reading it numbers,
so a restart never reuses a number. So does the last timestamp issued to the device: a reading
without its own time is stamped in nanoseconds, strictly after every earlier stamped reading of
the device (`stamp`), across restarts, because a reading's time is its identity in InfluxDB and
two readings with one stamp overwrite each other. A time the device gives itself does not
move the stamps: a wrong device clock (an hour ahead, rejected as clock skew) must not drag
every later stamp into the future with it. The agent's alert-rule state (which rules are
raised) is kept here as well, so a restart does not forget an open alert it must clear.

Durability: WAL mode with `synchronous=NORMAL`. A committed row survives the agent being
killed; a power cut may lose the last few commits (WAL's documented trade-off), which keeps an
append well under a millisecond instead of one fsync per reading.

Bounded disk use, policy: drop the oldest. When the spool holds more than `max_messages`
messages or more than `max_bytes` bytes of payload, the oldest messages are deleted until it
fits again; every dropped message is counted (`dropped_total`, persisted) and logged. The
agent reports the count as the metric `spool_dropped` with its next reading.

Touches: its own SQLite file only. Not thread-safe: one agent thread owns a spool, and the
file is opened in exclusive locking mode so that a second agent on the same file fails loudly
instead of interleaving sequence numbers.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edgewatch.encode import encode_text, reading_body

SpoolKind = Literal["telemetry", "alert"]

DEFAULT_MAX_MESSAGES = 100_000
# How far the stamps may run ahead of the clock: the contract's clock-skew limit (5 min).
STAMP_MAX_LEAD_NS = 5 * 60 * 1_000_000_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value)
    VALUES ('next_seq', 0), ('dropped_total', 0), ('refused_total', 0), ('last_ts_ns', 0);
CREATE TABLE IF NOT EXISTS agent_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
_RAISED_ALERTS = "raised_alerts"


class SpoolError(RuntimeError):
    """The spool file cannot be used (in use by another agent, unreadable, ...)."""


@dataclass(frozen=True, slots=True)
class SpoolItem:
    """One stored message: `text` is its JSON exactly as it will be sent (UTF-8 `size` bytes)."""

    id: int
    kind: SpoolKind
    text: str
    size: int

    @property
    def body(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.text)
        return value


class Spool:
    """An ordered, bounded, persistent outbox with a persistent per-device sequence counter."""

    def __init__(
        self,
        path: Path,
        *,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        logger: logging.Logger | None = None,
    ) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("spool bounds must be positive")
        self.path = path
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._log = logger or logging.getLogger(__name__)
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we open our own transactions, one per append or removal.
        self._db = sqlite3.connect(path, isolation_level=None, timeout=0.5)
        try:
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            count, size = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox"
            ).fetchone()
        except sqlite3.OperationalError as exc:
            self._db.close()
            if "locked" in str(exc):
                raise SpoolError(
                    f"spool {path} is in use by another agent (one agent per spool file)"
                ) from None
            raise SpoolError(f"spool {path} cannot be opened: {exc}") from None
        # Kept in memory so that an append does not have to scan the table to enforce bounds.
        self._count: int = count
        self._bytes: int = size
        # Issued stamps run ahead of the stored ones by at most the readings the agent stamped
        # but did not keep (deadband): reusing one of those after a restart collides with
        # nothing stored.
        self._last_ts_ns: int = self._meta("last_ts_ns")

    # ------------------------------------------------------------------ state

    @property
    def depth(self) -> int:
        """How many messages wait to be acknowledged."""
        return self._count

    @property
    def size_bytes(self) -> int:
        """Payload bytes held."""
        return self._bytes

    @property
    def dropped_total(self) -> int:
        """Messages dropped by the bound since this spool file was created."""
        return self._meta("dropped_total")

    @property
    def refused_total(self) -> int:
        """Messages deleted because the broker refused them for their own fault."""
        return self._meta("refused_total")

    @property
    def last_ts_ns(self) -> int:
        """The latest stamp a stored message of this device was given (0: none yet)."""
        return self._meta("last_ts_ns")

    @property
    def next_seq(self) -> int:
        """The `seq` the next reading without its own will get."""
        return self._meta("next_seq")

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ writes

    def stamp(self, clock_ns: int) -> int:
        """A timestamp for a reading or event without one: the clock's time, or 1 ns after the
        last stamp given out if the clock is not past it (a burst within one clock
        tick, a clock stepped back). Unique and strictly increasing for the device."""
        if self._last_ts_ns - clock_ns > STAMP_MAX_LEAD_NS:
            # The stamps ran ahead of a clock since set back by more than the contract's
            # skew limit: those readings were rejected as clock skew, so starting again at
            # the clock collides with nothing stored, where keeping on would have every
            # reading rejected until the clock caught up.
            self._log.warning(
                "spool %s: the last stamp is %.0f s ahead of the clock; stamping from the"
                " clock again",
                self.path,
                (self._last_ts_ns - clock_ns) / 1e9,
            )
            self._last_ts_ns = clock_ns - 1
        self._last_ts_ns = max(clock_ns, self._last_ts_ns + 1)
        return self._last_ts_ns

    def append_reading(
        self, metrics: Mapping[str, float | bool], *, ts_ns: int, seq: int | None = None
    ) -> SpoolItem:
        """Store one telemetry reading, numbering it with the next `seq` unless it has one.

        A device's own `seq` is kept, and the counter moves past it so numbers stay increasing.
        `ts_ns` is a stamp from `stamp` or the device's own time.
        """
        with self._transaction():
            if seq is None:
                seq = self._meta("next_seq")
            self._db.execute(
                "UPDATE meta SET value = MAX(value, ?) WHERE key = 'next_seq'", (seq + 1,)
            )
            self._store_ts(ts_ns)
            item = self._insert("telemetry", reading_body(metrics, ts_ns=ts_ns, seq=seq))
            self._enforce_bounds()
        return item

    def append_alert(self, body: Mapping[str, Any], *, ts_ns: int) -> SpoolItem:
        """Store one alert event (already a contract payload, with `ts` = `ts_ns`)."""
        with self._transaction():
            self._store_ts(ts_ns)
            item = self._insert("alert", dict(body))
            self._enforce_bounds()
        return item

    def _store_ts(self, ts_ns: int) -> None:
        # Only what `stamp` gave out is kept; a device's own later time is not (see above).
        if ts_ns == self._last_ts_ns:
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'last_ts_ns'", (ts_ns,))

    def _insert(self, kind: SpoolKind, body: dict[str, Any]) -> SpoolItem:
        text = encode_text(body)
        size = len(text.encode("utf-8"))
        cursor = self._db.execute(
            "INSERT INTO outbox (kind, payload, size) VALUES (?, ?, ?)", (kind, text, size)
        )
        self._count += 1
        self._bytes += size
        assert cursor.lastrowid is not None
        return SpoolItem(id=cursor.lastrowid, kind=kind, text=text, size=size)

    def _enforce_bounds(self) -> None:
        if self._count <= self.max_messages and self._bytes <= self.max_bytes:
            return
        dropped = 0
        dropped_bytes = 0
        # Oldest first; the newest row (just inserted) is never dropped by its own append
        # unless it alone is larger than the byte bound.
        rows = self._db.execute("SELECT id, size FROM outbox ORDER BY id").fetchall()
        last_id = None
        for row_id, size in rows:
            if self._count - dropped <= self.max_messages and (
                self._bytes - dropped_bytes <= self.max_bytes
            ):
                break
            dropped += 1
            dropped_bytes += size
            last_id = row_id
        if last_id is None:
            return
        self._db.execute("DELETE FROM outbox WHERE id <= ?", (last_id,))
        self._db.execute(
            "UPDATE meta SET value = value + ? WHERE key = 'dropped_total'", (dropped,)
        )
        self._count -= dropped
        self._bytes -= dropped_bytes
        self._log.warning(
            "spool %s full (%d messages, %d bytes max): dropped the %d oldest",
            self.path,
            self.max_messages,
            self.max_bytes,
            dropped,
        )

    def remove_range(self, first_id: int, last_id: int, *, refused: bool = False) -> int:
        """Delete the acknowledged messages with ids first_id..last_id; returns how many.

        A range is exact: ids only grow, so no message can appear inside a range that was read
        earlier. Rows already dropped by the bound are simply absent. `refused`: the broker
        refused them for their own fault; they are counted in `refused_total`.
        """
        with self._transaction():
            count, size = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox WHERE id BETWEEN ? AND ?",
                (first_id, last_id),
            ).fetchone()
            self._db.execute("DELETE FROM outbox WHERE id BETWEEN ? AND ?", (first_id, last_id))
            if refused:
                self._db.execute(
                    "UPDATE meta SET value = value + ? WHERE key = 'refused_total'", (count,)
                )
            self._count -= count
            self._bytes -= size
        return int(count)

    def save_raised_alerts(self, alert_types: Iterable[str]) -> None:
        """Remember which alert rules are raised (the agent's hysteresis state)."""
        text = json.dumps(sorted(alert_types))
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO agent_state (key, value) VALUES (?, ?)",
                (_RAISED_ALERTS, text),
            )

    # ------------------------------------------------------------------ reads

    def raised_alerts(self) -> frozenset[str]:
        """The alert rules raised when the state was last saved (none for a new spool)."""
        row = self._db.execute(
            "SELECT value FROM agent_state WHERE key = ?", (_RAISED_ALERTS,)
        ).fetchone()
        return frozenset(json.loads(row[0])) if row else frozenset()

    def peek(self, *, after_id: int = 0, limit: int = 1000) -> list[SpoolItem]:
        """The oldest messages with an id above `after_id`, in order."""
        rows = self._db.execute(
            "SELECT id, kind, payload, size FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [
            SpoolItem(id=row_id, kind=kind, text=payload, size=size)
            for row_id, kind, payload, size in rows
        ]

    def all_items(self) -> Sequence[SpoolItem]:
        """Everything held, oldest first (tests and diagnostics)."""
        return self.peek(after_id=0, limit=max(self._count, 1))

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the file; the exclusive lock goes with it."""
        self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT; on error roll back and re-read the in-memory counters,
        which the statements inside may already have moved."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._count, self._bytes = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox"
            ).fetchone()
            raise
        self._db.execute("COMMIT")
