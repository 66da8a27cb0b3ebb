"""SIGTERM while InfluxDB is down: the ingest still exits 0 after its grace period, and what
it could not store stays with the broker, to be stored by the next start."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from edgewatch.settings import Settings
from stack.processes import MosquittoProcess, free_port
from stack.testing import InfluxFixture
from tests.integration.ingest_support import (
    IngestProcess,
    Publisher,
    count_field,
    reading_payloads,
    wait_until,
)

pytestmark = pytest.mark.integration

READINGS = 500
NS = 1_000_000_000


def test_sigterm_while_influxdb_is_down_exits_and_loses_nothing(
    broker: MosquittoProcess,
    influxdb: InfluxFixture,
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(broker, influxdb)
    root, site = settings.mqtt_topic_root, f"s-{settings.mqtt_topic_root}"
    # InfluxDB "down": nothing listens where this ingest writes.
    unreachable = settings.model_copy(update={"influxdb_url": f"http://127.0.0.1:{free_port()}"})
    topic = f"{root}/{site}/cam-01/telemetry"
    with Publisher(broker.host, broker.port, f"pub-{root}") as pub:
        with IngestProcess(unreachable, name="ingest-down") as down:
            for _, payload in reading_payloads(time.time_ns() - 600 * NS, READINGS, 50):
                pub.publish(topic, payload)
            pub.wait_all()
            wait_until(lambda: "write of" in down.log_text(), 30, "a failing write")
            started = time.monotonic()
            assert down.terminate(timeout_seconds=60) == 0
            assert time.monotonic() - started < 60
            assert "left in the journal" in down.log_text()
        # The next start, with InfluxDB reachable, stores every reading the first could not.
        with IngestProcess(settings, name="ingest-up") as up:
            wait_until(
                lambda: count_field(influxdb, influxdb.bucket, "telemetry", site, "v") == READINGS,
                60,
                "every reading stored by the next start",
            )
            assert up.terminate() == 0
