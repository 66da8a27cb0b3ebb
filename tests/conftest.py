"""Shared fixtures: real Mosquitto and influxd processes on free loopback ports.

The processes come from `stack.testing`, the same code `edgewatch stack up` runs. Every
fixture stops what it started and removes its temp dir; a session hook kills anything left.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgewatch.settings import Settings
from stack.processes import MosquittoProcess, stop_all_attached
from stack.testing import (
    InfluxFixture,
    cached_influxd,
    running_broker,
    running_influxdb,
    settings_for,
)

SettingsFactory = Callable[..., Settings]


@pytest.fixture(scope="session")
def influx_binary() -> Path:
    """The cached influxd; a missing binary fails loudly (never a silent skip)."""
    try:
        return cached_influxd()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def influxdb(influx_binary: Path) -> Iterator[InfluxFixture]:
    """One bootstrapped InfluxDB for the session; tests keep apart by their own tags/roots."""
    with running_influxdb(influx_binary) as fixture:
        yield fixture


@pytest.fixture
def fresh_influxdb(influx_binary: Path) -> Iterator[InfluxFixture]:
    """An InfluxDB of this test's own, for tests that stop, kill or restart it."""
    with running_influxdb(influx_binary) as fixture:
        yield fixture


@pytest.fixture
def broker() -> Iterator[MosquittoProcess]:
    """A fresh Mosquitto for this test (.host, .port, .start(), .stop(), .restart(), .kill())."""
    with running_broker() as proc:
        yield proc


@pytest.fixture
def make_settings(tmp_path_factory: pytest.TempPathFactory) -> SettingsFactory:
    """`make_settings(broker, influxdb, **overrides)`: Settings pointing at both, unique root,
    and an ingest journal directory of the test's own."""

    def make(*args: object, **overrides: object) -> Settings:
        overrides.setdefault("ingest_journal_dir", tmp_path_factory.mktemp("journal"))
        return settings_for(*args, **overrides)  # type: ignore[arg-type]

    return make


def _children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A fixture torn down by an interrupted run may not have stopped its process.
    stop_all_attached()
    # Last resort: no child of the test run (an ingest, a dashboard) outlives it.
    for pid in _children_of(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
