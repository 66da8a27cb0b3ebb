"""bench room: the chaos reconciler, pure. What a fleet sent against what the store holds.

Value in, value out: the ground truth of a run (every reading each device spooled, with its
`ts` and `seq`; the alerts its own rules hold open; the malformed messages sent) and what
InfluxDB holds (the `telemetry_seq` points, the raw readings, the 1-minute and 1-hour rollups
with their progress, the dead letters, the dashboard's fold of the alerts) become one `Check`
per promise: a count expected, a count found. The chaos test (tests/integration/
test_chaos.py) and `python -m bench.chaos` both print `format_table` of them. Touches:
nothing.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MINUTE_NS = 60 * 1_000_000_000
HOUR_NS = 60 * MINUTE_NS
# Means are compared as floats summed in another order: equal within 1e-9, relative.
REL_TOLERANCE = 1e-9
ABS_TOLERANCE = 1e-12

DeviceKey = tuple[str, str]
AlertKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class SentReading:
    """One reading a device spooled (and, the spool being drained, sent)."""

    site: str
    device: str
    ts_ns: int
    seq: int


@dataclass(frozen=True, slots=True)
class StoredSeq:
    """One `telemetry_seq` point of the raw bucket."""

    site: str
    device: str
    ts_ns: int
    seq: int


@dataclass(frozen=True, slots=True)
class RawPoint:
    """One field of one stored reading; a boolean as 0.0 or 1.0."""

    site: str
    device: str
    field: str
    ts_ns: int
    value: float


@dataclass(frozen=True, slots=True)
class RollupMean:
    """One window of a rollup bucket: its start, mean and count."""

    site: str
    device: str
    field: str
    window_ns: int
    mean: float
    count: int


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    expected: int
    found: int

    @property
    def equal(self) -> bool:
        return self.expected == self.found


@dataclass(frozen=True, slots=True)
class GroundTruth:
    sent: tuple[SentReading, ...]
    open_alerts: frozenset[AlertKey]
    dead_letters: Mapping[str, int]  # code -> messages sent that must be rejected with it


@dataclass(frozen=True, slots=True)
class Stored:
    seqs: tuple[StoredSeq, ...]
    raw: tuple[RawPoint, ...]
    rollup_1m: tuple[RollupMean, ...]
    rollup_1h: tuple[RollupMean, ...]
    progress_1m_ns: int  # windows ending at or before this are closed
    progress_1h_ns: int
    open_alerts: frozenset[AlertKey]
    dead_letters: Mapping[str, int]


def same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOLERANCE, abs_tol=ABS_TOLERANCE)


def seq_checks(sent: Iterable[SentReading], stored: Iterable[StoredSeq]) -> list[Check]:
    """Every seq sent stored exactly once, at its own ts; nothing stored that was not sent;
    no two readings of a device with one timestamp."""
    sent_list = list(sent)
    where: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    for s in stored:
        where[(s.site, s.device, s.seq)].append(s.ts_ns)
    sent_keys = {(r.site, r.device, r.seq) for r in sent_list}
    exactly_once = sum(1 for r in sent_list if where.get((r.site, r.device, r.seq)) == [r.ts_ns])
    unsent = sum(len(v) for k, v in where.items() if k not in sent_keys)
    stamps = {(r.site, r.device, r.ts_ns) for r in sent_list}
    return [
        Check("seq sent, stored exactly once", len(sent_list), exactly_once),
        Check("seq stored, never sent", 0, unsent),
        Check("readings with a ts of their own", len(sent_list), len(stamps)),
    ]


def _windows(raw: Iterable[RawPoint], width_ns: int) -> dict[tuple[str, str, str, int], float]:
    groups: dict[tuple[str, str, str, int], list[float]] = defaultdict(list)
    for p in raw:
        groups[(p.site, p.device, p.field, p.ts_ns - p.ts_ns % width_ns)].append(p.value)
    return {k: math.fsum(v) / len(v) for k, v in groups.items()}


def rollup_checks(stored: Stored) -> list[Check]:
    """Each closed minute's 1m mean is its raw mean; each closed hour's 1h mean is the
    count-weighted mean of its 1m means and the raw mean."""
    raw_minutes = _windows(stored.raw, MINUTE_NS)
    raw_hours = _windows(stored.raw, HOUR_NS)
    m1 = {(r.site, r.device, r.field, r.window_ns): r for r in stored.rollup_1m}
    h1 = {(r.site, r.device, r.field, r.window_ns): r for r in stored.rollup_1h}
    closed_minutes = {
        k: v for k, v in raw_minutes.items() if k[3] + MINUTE_NS <= stored.progress_1m_ns
    }
    minutes_ok = sum(1 for k, v in closed_minutes.items() if k in m1 and same(m1[k].mean, v))
    orphan_minutes = sum(1 for k in m1 if k not in raw_minutes)
    weighted: dict[tuple[str, str, str, int], tuple[float, int]] = {}
    for (site, device, name, window), r in m1.items():
        key = (site, device, name, window - window % HOUR_NS)
        total, count = weighted.get(key, (0.0, 0))
        weighted[key] = (total + r.mean * r.count, count + r.count)
    closed_hours = {k: v for k, v in raw_hours.items() if k[3] + HOUR_NS <= stored.progress_1h_ns}

    def hour_ok(key: tuple[str, str, str, int], raw_mean: float) -> bool:
        if key not in h1 or key not in weighted or weighted[key][1] == 0:
            return False
        total, count = weighted[key]
        return same(h1[key].mean, raw_mean) and same(h1[key].mean, total / count)

    hours_ok = sum(1 for k, v in closed_hours.items() if hour_ok(k, v))
    orphan_hours = sum(1 for k in h1 if k not in raw_hours)
    return [
        Check("closed minutes: 1m mean = raw mean", len(closed_minutes), minutes_ok),
        Check("1m windows without raw points", 0, orphan_minutes),
        Check("closed hours: 1h mean = 1m weighted = raw", len(closed_hours), hours_ok),
        Check("1h windows without raw points", 0, orphan_hours),
    ]


def alert_checks(truth: frozenset[AlertKey], found: frozenset[AlertKey]) -> list[Check]:
    return [
        Check("open alerts (device rules) open in the fold", len(truth), len(truth & found)),
        Check("open in the fold, not open on the device", 0, len(found - truth)),
    ]


def dead_letter_checks(truth: Mapping[str, int], found: Mapping[str, int]) -> list[Check]:
    codes = sorted(set(truth) | set(found))
    return [Check(f"dead letters, code {c}", truth.get(c, 0), found.get(c, 0)) for c in codes]


def reconcile(truth: GroundTruth, stored: Stored) -> list[Check]:
    return [
        *seq_checks(truth.sent, stored.seqs),
        *rollup_checks(stored),
        *alert_checks(truth.open_alerts, stored.open_alerts),
        *dead_letter_checks(truth.dead_letters, stored.dead_letters),
    ]


def open_alerts_of(events: Iterable[tuple[str, str, str, str]]) -> frozenset[AlertKey]:
    """(site, device, type, state) in the order a device sent them -> the ones left raised."""
    last: dict[AlertKey, str] = {}
    for site, device, kind, state in events:
        last[(site, device, kind)] = state
    return frozenset(k for k, state in last.items() if state == "raised")


def code_counts(codes: Iterable[str]) -> dict[str, int]:
    return dict(Counter(codes))


def format_table(checks: Iterable[Check]) -> str:
    rows = [("check", "expected", "found", "equal")]
    rows += [(c.name, str(c.expected), str(c.found), "yes" if c.equal else "NO") for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:<{widths[3]}}"
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
