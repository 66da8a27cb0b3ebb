"""The ingest's journal against real Mosquitto and influxd: while InfluxDB is down the ingest
acknowledges everything (the broker's queue drains into the journal), survives kill -9 with
the journal full of data, and stores every reading exactly once when InfluxDB is back."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from edgewatch.settings import Settings
from ingest.journal import peek
from stack.processes import MosquittoProcess
from stack.testing import InfluxFixture
from tests.integration.ingest_support import (
    IngestProcess,
    Publisher,
    count_field,
    query,
    reading_payloads,
    wait_until,
)

pytestmark = pytest.mark.integration

NS = 1_000_000_000
READINGS = 20_000
READINGS_PER_MESSAGE = 10
MESSAGES = READINGS // READINGS_PER_MESSAGE


def test_an_outage_of_influxdb_and_a_kill_9_lose_nothing_and_double_nothing(
    broker: MosquittoProcess, fresh_influxdb: InfluxFixture, make_settings: Callable[..., Settings]
) -> None:
    influx = fresh_influxdb
    settings = make_settings(broker, influx, ingest_stats_interval_seconds=1.0)
    root, site = settings.mqtt_topic_root, f"s-{settings.mqtt_topic_root}"
    journal_dir = settings.ingest_journal_path
    with IngestProcess(settings, name="first") as first:
        influx.process.stop()
        with Publisher(broker.host, broker.port, f"pub-{root}") as pub:
            payloads = reading_payloads(time.time_ns() - 3600 * NS, READINGS, READINGS_PER_MESSAGE)
            for index, (_, payload) in enumerate(payloads):
                pub.publish(f"{root}/{site}/d{index % 4}/telemetry", payload)
            pub.wait_all()
        # InfluxDB is down, yet every message is taken from the broker and journaled.
        wait_until(
            lambda: peek(journal_dir).entries_by_kind.get("telemetry", 0) >= MESSAGES,
            120,
            "every message in the journal",
            poll=0.2,
        )
        assert "keeping it in the journal, retrying" in first.log_text()
        first.kill()
    assert peek(journal_dir).entries_by_kind["telemetry"] >= MESSAGES

    # A new MQTT client id: the broker has no session for it, so nothing can come back from
    # the broker; whatever is stored now comes from the journal alone.
    restarted = settings.model_copy(update={"mqtt_client_id": f"{settings.mqtt_client_id}-new"})
    with IngestProcess(restarted, name="restarted") as second:
        assert "from before the restart" in second.log_text()
        influx.process.start()
        wait_until(
            lambda: count_field(influx, influx.bucket, "telemetry", site, "v") >= READINGS,
            180,
            "every reading stored",
        )
        wait_until(lambda: peek(journal_dir).entries == 0, 60, "the journal drained", poll=0.2)
        assert second.terminate() == 0
    assert count_field(influx, influx.bucket, "telemetry", site, "v") == READINGS
    assert count_field(influx, influx.bucket, "telemetry_seq", site, "seq") == READINGS
    stats = query(
        influx,
        """
        from(bucket: bucket) |> range(start: -1h)
          |> filter(fn: (r) => r._measurement == "ingest_stats" and r.instance == i)
          |> filter(fn: (r) => r._field =~ /^journal_/)
          |> last()
        """,
        bucket=influx.bucket,
        i=settings.ingest_instance,
    )
    last = {row["_field"]: row["_value"] for row in stats}
    # The last report, at the stop, saw an empty journal.
    assert last["journal_entries"] == 0
    assert last["journal_fill"] < 0.001  # an empty database keeps a few pages
    assert last["journal_max_bytes"] == settings.ingest_journal_max_bytes
    assert {"journal_bytes", "journal_oldest_age_s"} <= set(last)
