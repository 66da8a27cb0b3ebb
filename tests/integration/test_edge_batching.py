"""Edge batching (linger) and gzip payloads (contract v1.1) through real Mosquitto, the ingest
and InfluxDB."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.agent import EdgeAgent
from edge.spool import Spool
from edge.transport import paho_factory
from edgewatch.contract import CONTENT_TYPE_JSON_GZIP, MAX_PAYLOAD_BYTES
from edgewatch.encode import encode_payload, gzip_payload, reading_body
from edgewatch.models import DeviceInfo
from edgewatch.settings import Settings
from stack.processes import MosquittoProcess
from stack.testing import InfluxFixture
from tests.integration.ingest_support import (
    IngestProcess,
    Publisher,
    count_field,
    dead_letters,
    stored_readings,
    wait_until,
)

pytestmark = pytest.mark.integration

SettingsFactory = Callable[..., Settings]
NS = 1_000_000_000
MS = 1_000_000
READINGS = 300


def _wait_stored(influx: InfluxFixture, site: str, field: str, count: int, what: str) -> None:
    def stored() -> bool:
        return count_field(influx, influx.bucket, "telemetry", site, field) >= count

    wait_until(stored, 60, what)


def _run_agent(settings: Settings, spool_path: Path, site: str, *, gzip: bool) -> EdgeAgent:
    """An agent with the default linger that takes READINGS readings as fast as they come and
    is stopped once the broker acknowledged them all; their times are returned in `sent`."""
    with Spool(spool_path) as spool:
        agent = EdgeAgent(
            site=site,
            device="cam-01",
            spool=spool,
            transport_factory=paho_factory(settings),
            topic_root=settings.mqtt_topic_root,
            info=DeviceInfo(interval_s=10.0),
            gzip=gzip,
        )
        agent.start()
        wait_until(lambda: (agent.pump(0.1), agent.connected)[1], 30, "the agent to connect")
        first_ns = time.time_ns() // MS * MS - 60 * NS
        for i in range(READINGS):
            agent.record({"v": float(i), "temp_c": 40.0 + i % 7}, ts_ns=first_ns + i * MS)
            agent.pump()
        wait_until(lambda: (agent.pump(0.2), agent.spool_depth == 0)[1], 60, "the PUBACKs")
        agent.stop(timeout_s=2.0)
    return agent


def test_a_lingering_agent_stores_every_reading_once_in_fewer_messages(
    broker: MosquittoProcess,
    influxdb: InfluxFixture,
    make_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    settings = make_settings(broker, influxdb)
    site = f"linger-{secrets.token_hex(3)}"
    with IngestProcess(settings):
        agent = _run_agent(settings, tmp_path / "spool.sqlite", site, gzip=False)
        _wait_stored(influxdb, site, "v", READINGS, "every reading to be stored")
    times = [ts for ts, _ in stored_readings(influxdb, site, "v")]
    assert len(times) == READINGS == len(set(times))  # each reading once
    stats = agent.stats
    assert stats.acked == READINGS
    assert stats.messages_published < READINGS / 10  # batches, not one message per reading
    assert stats.gzipped == 0


def test_gzip_batches_are_stored_and_a_gzip_bomb_is_dead_lettered(
    broker: MosquittoProcess,
    influxdb: InfluxFixture,
    make_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    settings = make_settings(broker, influxdb)
    root = settings.mqtt_topic_root
    site = f"gzip-{secrets.token_hex(3)}"
    after_ts_ns = time.time_ns() // MS * MS - 30 * NS
    # Inflates to 64 times the contract's limit from a few kilobytes.
    bomb = gzip_payload(b'{"metrics": {"x": 1}, "pad": "' + b"0" * (64 * MAX_PAYLOAD_BYTES) + b'"}')
    after = gzip_payload(encode_payload(reading_body({"after_bomb": 1.0}, ts_ns=after_ts_ns)))
    topic = f"{root}/{site}/cam-02/telemetry"
    with IngestProcess(settings) as ingest:
        agent = _run_agent(settings, tmp_path / "spool.sqlite", site, gzip=True)
        with Publisher(broker.host, broker.port, f"pub-{root}") as pub:
            pub.publish(topic, bomb, content_type=CONTENT_TYPE_JSON_GZIP)
            pub.publish(topic, after, content_type=CONTENT_TYPE_JSON_GZIP)
            pub.wait_all()
        _wait_stored(influxdb, site, "after_bomb", 1, "the message after the bomb to be stored")
        _wait_stored(influxdb, site, "v", READINGS, "every gzip-batched reading to be stored")
        assert ingest.is_running  # the bomb cost it nothing
    assert agent.stats.gzipped >= 1 and agent.stats.messages_published < READINGS / 10
    assert len({ts for ts, _ in stored_readings(influxdb, site, "v")}) == READINGS
    (letter,) = dead_letters(influxdb, influxdb.bucket, topic)
    assert letter["code"] == "too_large"
    assert "gzip payload inflates to more than 262144 bytes" in letter["reason"]
