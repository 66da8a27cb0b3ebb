"""ingest room: the durable journal between the broker and InfluxDB (one SQLite file, WAL).

Touches its own directory only. The ingest appends what it decoded (data lines and dead
letters) here, and acknowledges the messages to the broker only once `append` returned; a
writer drains the journal to InfluxDB in order and removes entries only after InfluxDB
answered. The broker's in-memory queue is thus no longer the buffer for an outage of
InfluxDB: the journal is, bounded by `max_bytes` of disk.

Durability. The database runs in WAL mode with `synchronous=FULL`: a commit returns after
the WAL was fsynced, so an appended entry survives kill -9 of the ingest and a power loss
(given a disk that honours fsync). A torn last transaction (power lost mid-commit) is rolled
back by SQLite on the next open; its messages were not acknowledged yet, so the broker
still holds them.

Why SQLite and not segment files: both must fsync once per appended batch; SQLite brings
crash recovery, the in-order read and the remove-through-id for free, and the edge agent
already keeps its spool the same way. Its cost against no journal is measured by
`python -m bench.outage --compare` (BENCHMARKS.md).

One journal per ingest instance: the directory is locked (flock) while open, so a second
process on the same directory fails at start with a clear error instead of draining twice.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from edgewatch.contract import PAYLOAD_EXCERPT_BYTES
from ingest.pipeline import Entry, EntryKind

DB_NAME = "journal.sqlite"
LOCK_NAME = "journal.lock"
ENTRY_OVERHEAD_BYTES = 48  # row id, kind, times, lengths: what a row costs beyond its text
READ_CHUNK_ROWS = 256
# Entries also kept in memory while the writer keeps up, so it need not read them back.
CACHE_MAX_ENTRIES = 20_000
HIGH_WATER_SHARE = 0.8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    received_ns INTEGER NOT NULL,
    code TEXT,
    lines TEXT NOT NULL,
    state_lines TEXT NOT NULL,
    rollup_markers TEXT NOT NULL DEFAULT '',
    line_count INTEGER NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL
)
"""


class JournalError(RuntimeError):
    """The journal cannot be opened (locked by another process, unwritable directory)."""


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One stored entry and its position in the journal."""

    id: int
    entry: Entry
    size: int


@dataclass(frozen=True, slots=True)
class JournalFill:
    """The journal's fill level, for the self-metrics."""

    bytes: int
    entries: int
    max_bytes: int
    oldest_received_ns: int | None

    @property
    def share(self) -> float:
        return self.bytes / self.max_bytes if self.max_bytes > 0 else 0.0


def entry_size(entry: Entry) -> int:
    """An entry's text and overhead in bytes (what `peek` sums; the limit counts pages)."""
    text = (
        sum(len(line) + 1 for line in entry.lines)
        + sum(len(s) + 1 for s in entry.state_lines)
        + sum(len(m) + 21 for _, m in entry.rollup_markers)
    )
    return (
        text + len(entry.topic) + min(len(entry.payload), PAYLOAD_EXCERPT_BYTES + 1)
    ) + ENTRY_OVERHEAD_BYTES


def _join(lines: tuple[str, ...]) -> str:
    return "\n".join(lines)


def _join_markers(markers: tuple[tuple[int, str], ...]) -> str:
    return "\n".join(f"{at_ns} {line}" for at_ns, line in markers)


def _split_markers(text: str) -> tuple[tuple[int, str], ...]:
    pairs = (row.split(" ", 1) for row in text.split("\n") if row)
    return tuple((int(at_ns), line) for at_ns, line in pairs)


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split("\n")) if text else ()


class Journal:
    """The on-disk journal of one ingest instance. Thread-safe (one connection, one lock)."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        high_water_share: float = HIGH_WATER_SHARE,
        logger: logging.Logger | None = None,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._high_water = high_water_share
        self._log = logger or logging.getLogger(__name__)
        self._lock = threading.Lock()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise JournalError(
                f"cannot use the ingest journal directory {directory}: {exc}; set "
                "EDGEWATCH_INGEST_JOURNAL_DIR to a writable directory"
            ) from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            raise JournalError(
                f"the ingest journal {directory} is in use by another process: give each "
                "ingest replica its own EDGEWATCH_INGEST_INSTANCE"
            ) from exc
        try:
            self._open_database()
        except sqlite3.Error as exc:
            os.close(self._lock_fd)
            raise JournalError(
                f"the ingest journal {directory / DB_NAME} cannot be opened: {exc}; if it is "
                "damaged, move it aside to start with an empty journal (what it held is then "
                "not written to InfluxDB)"
            ) from exc
        # The newest appends, in order. While `_cache_complete`, it holds every row of the
        # journal and `read` serves from it; after a restart, or once the writer fell more
        # than CACHE_MAX_ENTRIES behind, reads go to the database until the journal is empty.
        self._cache: deque[JournalRecord] = deque()
        self._cache_complete = self._entries == 0
        self._above_high_water = False
        if self._entries:
            self._log.info(
                "ingest journal %s holds %d entries (%d bytes) from before the restart; "
                "draining them to InfluxDB first",
                directory,
                self._entries,
                self._bytes,
            )
        self._check_high_water()

    def _open_database(self) -> None:
        self._db = sqlite3.connect(
            self.directory / DB_NAME, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsynced at every commit, so an acknowledged message survives power loss.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        (count,) = self._db.execute("SELECT COUNT(*) FROM entries").fetchone()
        self._bytes = self._used_bytes()
        self._entries = int(count)
        self._oldest_ns = self._query_oldest()

    # ------------------------------------------------------------------ state

    def fill(self) -> JournalFill:
        with self._lock:
            return JournalFill(self._bytes, self._entries, self.max_bytes, self._oldest_ns)

    @property
    def is_full(self) -> bool:
        """No more appends until the writer drained some (one batch may overshoot the limit).

        Bytes are the database's pages in use, so the limit bounds the disk the journal takes
        (plus the WAL, which checkpoints keep near 4 MiB)."""
        with self._lock:
            return self._bytes >= self.max_bytes

    @property
    def is_empty(self) -> bool:
        with self._lock:
            return self._entries == 0

    def _used_bytes(self) -> int:
        """The database's pages in use: what the journal takes on disk, less its free pages
        (a drained journal keeps its file and reuses the pages)."""
        (pages,) = self._db.execute("PRAGMA page_count").fetchone()
        (free,) = self._db.execute("PRAGMA freelist_count").fetchone()
        return (int(pages) - int(free)) * self._page_size

    def _query_oldest(self) -> int | None:
        row = self._db.execute("SELECT received_ns FROM entries ORDER BY id LIMIT 1").fetchone()
        return int(row[0]) if row else None

    def _check_high_water(self) -> None:
        share = self._bytes / self.max_bytes if self.max_bytes > 0 else 0.0
        if share >= self._high_water and not self._above_high_water:
            self._above_high_water = True
            self._log.warning(
                "ingest journal %s is %.0f%% full (%d of %d bytes, %d entries): InfluxDB is not "
                "keeping up or is down; at 100%% the ingest stops acknowledging and the broker "
                "holds the rest",
                self.directory,
                share * 100,
                self._bytes,
                self.max_bytes,
                self._entries,
            )
        elif share < self._high_water * 0.9 and self._above_high_water:
            self._above_high_water = False
            self._log.info("ingest journal %s is back to %.0f%% full", self.directory, share * 100)

    # ------------------------------------------------------------------ writes

    def append(self, entries: Sequence[Entry]) -> None:
        """Store `entries` durably, in order; returns once they are on disk."""
        if not entries:
            return
        rows = []
        sizes = []
        for entry in entries:
            sizes.append(entry_size(entry))
            rows.append(
                (
                    entry.kind,
                    entry.topic,
                    entry.received_ns,
                    entry.code,
                    _join(entry.lines),
                    _join(entry.state_lines),
                    _join_markers(entry.rollup_markers),
                    entry.line_count,
                    entry.payload[: PAYLOAD_EXCERPT_BYTES + 1],
                    sizes[-1],
                )
            )
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO entries (kind, topic, received_ns, code, lines, state_lines, "
                    "rollup_markers, line_count, payload, size) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                # One writer, one transaction: the new rows' ids are consecutive.
                (last_id,) = self._db.execute("SELECT last_insert_rowid()").fetchone()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._cache_appended(int(last_id), entries, sizes)
            if self._entries == 0:
                self._oldest_ns = entries[0].received_ns
            self._bytes = self._used_bytes()
            self._entries += len(rows)
            self._check_high_water()

    def _cache_appended(self, last_id: int, entries: Sequence[Entry], sizes: list[int]) -> None:
        if not self._cache_complete:
            return
        if len(self._cache) + len(entries) > CACHE_MAX_ENTRIES:
            self._cache.clear()
            self._cache_complete = False
            return
        first_id = last_id - len(entries) + 1
        self._cache.extend(
            JournalRecord(id=first_id + index, entry=entry, size=size)
            for index, (entry, size) in enumerate(zip(entries, sizes, strict=True))
        )

    def read(self, max_lines: int) -> list[JournalRecord]:
        """The oldest entries, whole, up to `max_lines` lines (at least one entry)."""
        with self._lock:
            if self._cache_complete:
                return self._read_cache(max_lines)
            return self._read_database(max_lines)

    def _read_cache(self, max_lines: int) -> list[JournalRecord]:
        records: list[JournalRecord] = []
        lines = 0
        for record in self._cache:
            line_count = record.entry.line_count
            if records and lines + line_count > max_lines:
                break
            records.append(record)
            lines += line_count
        return records

    def _read_database(self, max_lines: int) -> list[JournalRecord]:
        records: list[JournalRecord] = []
        lines = 0
        after = 0
        while True:
            rows = self._db.execute(
                "SELECT id, kind, topic, received_ns, code, lines, state_lines, line_count, "
                "payload, size, rollup_markers FROM entries WHERE id > ? ORDER BY id LIMIT ?",
                (after, READ_CHUNK_ROWS),
            ).fetchall()
            for row in rows:
                line_count = int(row[7])
                if records and lines + line_count > max_lines:
                    return records
                records.append(
                    JournalRecord(
                        id=int(row[0]),
                        entry=Entry(
                            kind=cast(EntryKind, row[1]),
                            lines=_split(row[5]),
                            state_lines=_split(row[6]),
                            rollup_markers=_split_markers(row[10]),
                            ack_token=None,  # acknowledged when it was journaled
                            topic=row[2],
                            received_ns=int(row[3]),
                            payload=bytes(row[8]),
                            code=row[4],
                        ),
                        size=int(row[9]),
                    )
                )
                lines += line_count
            if len(rows) < READ_CHUNK_ROWS or lines >= max_lines:
                return records
            after = records[-1].id

    def remove(self, records: Sequence[JournalRecord]) -> None:
        """Forget `records` (the oldest ones, as `read` returned them): InfluxDB has them."""
        if not records:
            return
        last_id = max(r.id for r in records)
        with self._lock:
            self._db.execute("DELETE FROM entries WHERE id <= ?", (last_id,))
            self._bytes = self._used_bytes()
            self._entries = max(0, self._entries - len(records))
            while self._cache and self._cache[0].id <= last_id:
                self._cache.popleft()
            if self._entries == 0:
                self._cache.clear()
                self._cache_complete = True
                self._oldest_ns = None
            else:
                self._oldest_ns = self._query_oldest()
            self._check_high_water()

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            finally:
                os.close(self._lock_fd)


@dataclass(frozen=True, slots=True)
class JournalPeek:
    """What a journal directory holds, as seen from outside the ingest that owns it."""

    entries: int
    entries_by_kind: dict[str, int]
    text_bytes: int
    disk_bytes: int


def disk_bytes(directory: Path) -> int:
    """The journal's files on disk (database, WAL, shared memory)."""
    return sum(path.stat().st_size for path in directory.glob(f"{DB_NAME}*") if path.is_file())


def peek(directory: Path) -> JournalPeek:
    """Count a journal's entries without taking its lock (for tests, benchmarks, operators)."""
    path = directory / DB_NAME
    if not path.exists():
        return JournalPeek(0, {}, 0, 0)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
    try:
        rows = db.execute(
            "SELECT kind, COUNT(*), COALESCE(SUM(size), 0) FROM entries GROUP BY kind"
        ).fetchall()
    finally:
        db.close()
    by_kind = {str(kind): int(count) for kind, count, _ in rows}
    return JournalPeek(
        entries=sum(by_kind.values()),
        entries_by_kind=by_kind,
        text_bytes=sum(int(size) for _, _, size in rows),
        disk_bytes=disk_bytes(directory),
    )
