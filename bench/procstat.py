"""bench room: what a process cost, read from /proc (Linux only; psutil is not a dependency).

Pure readers of `/proc/<pid>/status` and `/proc/<pid>/stat`; a gone process reads as None.
"""

from __future__ import annotations

import os
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
