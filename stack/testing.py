"""stack room: the names the test fixtures (tests/conftest.py) import.

Everything here lives in `stack/ephemeral.py`, which the benchmarks use too; this module is
the tests' one import point, kept so that the room rule "only tests import the test fixtures"
stays checkable. Touches: nothing.
"""

from __future__ import annotations

from stack.ephemeral import (
    InfluxFixture,
    cached_influxd,
    running_broker,
    running_influxdb,
    settings_for,
    unique_topic_root,
)

__all__ = [
    "InfluxFixture",
    "cached_influxd",
    "running_broker",
    "running_influxdb",
    "settings_for",
    "unique_topic_root",
]
