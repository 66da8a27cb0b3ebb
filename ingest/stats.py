"""ingest room: the ingest's self-metrics, as plain counters. Pure: touches nothing.

One `IngestStats` is shared by the worker thread (received, rejected) and the journal writer
(stored, storage rejections), so its methods take a lock. The counters run since start (a
restart shows as a drop to zero, which a reader's `difference()`
handles); latencies are kept for the current reporting interval only.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass, field

from edgewatch.contract import REJECT_CODES

# Field names of the `ingest_stats` point (docs/architecture.md); their types never change,
# so that InfluxDB never sees a field type conflict between two reports.
INT_FIELDS: tuple[str, ...] = (
    "received",
    "accepted",
    "rejected",
    *(f"rejected_{code}" for code in REJECT_CODES),
    "batches",
    "points",
    "queue_depth",
    "journal_bytes",
    "journal_entries",
    "journal_max_bytes",
)
FLOAT_FIELDS: tuple[str, ...] = (
    "write_latency_ms_p50",
    "write_latency_ms_max",
    "lag_ms",
    "interval_s",
    "journal_fill",
    "journal_oldest_age_s",
)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (0.0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class JournalLevel:
    """The journal's fill level at report time (zeros: no journal)."""

    bytes: int = 0
    entries: int = 0
    max_bytes: int = 0
    fill: float = 0.0
    oldest_age_s: float = 0.0


@dataclass(slots=True)
class IngestStats:
    """Counters since start plus this interval's write latencies."""

    received: int = 0
    accepted: int = 0
    rejected_by_code: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    points: int = 0
    write_latencies_ms: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_code.values())

    def count_received(self, messages: int = 1) -> None:
        with self._lock:
            self.received += messages

    def count_accepted(self, messages: int) -> None:
        with self._lock:
            self.accepted += messages

    def count_rejected(self, code: str) -> None:
        with self._lock:
            self.rejected_by_code[code] += 1

    def count_write(self, *, points: int, latency_ms: float) -> None:
        """One batch stored: `points` lines in `latency_ms` (all attempts included)."""
        with self._lock:
            self.batches += 1
            self.points += points
            self.write_latencies_ms.append(latency_ms)

    def report(
        self,
        *,
        queue_depth: int,
        lag_ms: float,
        interval_s: float,
        journal: JournalLevel | None = None,
    ) -> dict[str, float | int]:
        """The fields of one `ingest_stats` point; starts a new latency interval."""
        with self._lock:
            return self._report(queue_depth, lag_ms, interval_s, journal or JournalLevel())

    def _report(
        self, queue_depth: int, lag_ms: float, interval_s: float, journal: JournalLevel
    ) -> dict[str, float | int]:
        fields: dict[str, float | int] = {
            "received": self.received,
            "accepted": self.accepted,
            "rejected": self.rejected,
        }
        for code in REJECT_CODES:
            fields[f"rejected_{code}"] = self.rejected_by_code.get(code, 0)
        fields["batches"] = self.batches
        fields["points"] = self.points
        fields["write_latency_ms_p50"] = float(percentile(self.write_latencies_ms, 0.5))
        fields["write_latency_ms_max"] = float(max(self.write_latencies_ms, default=0.0))
        fields["queue_depth"] = int(queue_depth)
        fields["lag_ms"] = float(max(lag_ms, 0.0))
        fields["interval_s"] = float(interval_s)
        fields["journal_bytes"] = int(journal.bytes)
        fields["journal_entries"] = int(journal.entries)
        fields["journal_max_bytes"] = int(journal.max_bytes)
        fields["journal_fill"] = float(journal.fill)
        fields["journal_oldest_age_s"] = float(max(journal.oldest_age_s, 0.0))
        self.write_latencies_ms = []
        return fields


def summary(instance: str, fields: dict[str, float | int]) -> str:
    """The one-line INFO summary of a report."""
    rejected = ", ".join(
        f"{code}={fields[f'rejected_{code}']}"
        for code in REJECT_CODES
        if fields.get(f"rejected_{code}")
    )
    return (
        f"ingest {instance}: received={fields['received']} accepted={fields['accepted']} "
        f"rejected={fields['rejected']}{f' ({rejected})' if rejected else ''} "
        f"batches={fields['batches']} points={fields['points']} "
        f"write_p50={fields['write_latency_ms_p50']:.1f}ms "
        f"write_max={fields['write_latency_ms_max']:.1f}ms "
        f"queue={fields['queue_depth']} lag={fields['lag_ms']:.0f}ms "
        f"journal={fields.get('journal_entries', 0)} entries/"
        f"{fields.get('journal_bytes', 0)} bytes ({float(fields.get('journal_fill', 0.0)):.0%})"
    )
