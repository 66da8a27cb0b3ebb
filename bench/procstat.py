"""bench room: what a process cost, read from /proc (Linux only; psutil is not a dependency).

Pure readers of `/proc/<pid>/status` and `/proc/<pid>/stat`; a gone process reads as None.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
KIB = 1024


def _status_kib(text: str, key: str) -> int | None:
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def parse_peak_rss_bytes(status_text: str) -> int | None:
    """VmHWM (the resident set's high-water mark) from the text of /proc/<pid>/status."""
    kib = _status_kib(status_text, "VmHWM")
    return None if kib is None else kib * KIB


def parse_cpu_seconds(stat_text: str) -> float:
    """utime + stime from the text of /proc/<pid>/stat, in seconds."""
    # Fields after the parenthesised command name (which may hold spaces and parentheses).
    fields = stat_text.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS_PER_SECOND


def peak_rss_bytes(pid: int) -> int | None:
    try:
        return parse_peak_rss_bytes(Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None


def cpu_seconds(pid: int) -> float | None:
    try:
        return parse_cpu_seconds(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class ProcSample:
    """CPU seconds so far and peak RSS so far of one process."""

    pid: int
    cpu_seconds: float
    peak_rss_bytes: int

    @classmethod
    def read(cls, pid: int) -> ProcSample | None:
        cpu = cpu_seconds(pid)
        rss = peak_rss_bytes(pid)
        if cpu is None or rss is None:
            return None
        return cls(pid=pid, cpu_seconds=cpu, peak_rss_bytes=rss)


def cpu_between(before: ProcSample | None, after: ProcSample | None) -> float | None:
    if before is None or after is None:
        return None
    return max(0.0, after.cpu_seconds - before.cpu_seconds)


def _read_all(pids: Sequence[int | None]) -> list[ProcSample | None]:
    return [ProcSample.read(pid) if pid is not None else None for pid in pids]


@dataclass(slots=True)
class RunCpu:
    """The CPU a run's consumers (together) and influxd spent between `begin` and `end`.

    None where a process was gone at either end: a run's figure is whole or absent.
    """

    pids: tuple[int | None, ...]
    influxd_pid: int | None
    before: list[ProcSample | None]
    influxd_before: ProcSample | None
    after: list[ProcSample | None] | None = None
    influxd_after: ProcSample | None = None

    @classmethod
    def begin(cls, pids: Sequence[int | None], influxd_pid: int | None) -> RunCpu:
        (influxd,) = _read_all([influxd_pid])
        return cls(tuple(pids), influxd_pid, _read_all(pids), influxd)

    def end(self) -> None:
        self.after = _read_all(self.pids)
        (self.influxd_after,) = _read_all([self.influxd_pid])

    @property
    def consumers_seconds(self) -> float | None:
        if self.after is None:
            return None
        parts = [cpu_between(b, a) for b, a in zip(self.before, self.after, strict=True)]
        return None if any(p is None for p in parts) else sum(p or 0.0 for p in parts)

    @property
    def influxd_seconds(self) -> float | None:
        return cpu_between(self.influxd_before, self.influxd_after)

    def fields(self, *, count: int, unit: str) -> dict[str, float | None]:
        """The run's CPU figures: total, per `unit` (`count` of them), and influxd's."""
        consumers = self.consumers_seconds
        return {
            "cpu_seconds": consumers,
            f"cpu_us_per_{unit}": None if consumers is None else consumers * 1e6 / count,
            "influxd_cpu_seconds": self.influxd_seconds,
        }
