"""The ingest against real Mosquitto and influxd: at-least-once, dead letters, scale-out."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from edgewatch.settings import Settings
from stack.processes import MosquittoProcess
from stack.testing import InfluxFixture
from tests.integration.ingest_support import (
    IngestProcess,
    Publisher,
    ThreadedIngest,
    count_field,
    dead_letters,
    query,
    reading_payloads,
    wait_until,
)

pytestmark = pytest.mark.integration

SettingsFactory = Callable[..., Settings]
NS = 1_000_000_000
TOTAL_READINGS = 20_000
READINGS_PER_MESSAGE = 20


def _publish_readings(
    pub: Publisher,
    settings: Settings,
    site: str,
    *,
    count: int,
    start_ns: int,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """Publish `count` readings over 4 devices, calling `on_progress(published)` as it goes."""
    root = settings.mqtt_topic_root
    published = 0
    for index, (n, payload) in enumerate(reading_payloads(start_ns, count, READINGS_PER_MESSAGE)):
        pub.publish(f"{root}/{site}/d{index % 4}/telemetry", payload)
        published += n
        if on_progress is not None:
            on_progress(published)


def _stored(influx: InfluxFixture, site: str) -> int:
    return count_field(influx, influx.bucket, "telemetry", site, "v")


def _assert_exactly_stored(influx: InfluxFixture, settings: Settings, site: str) -> None:
    wait_until(lambda: _stored(influx, site) >= TOTAL_READINGS, 120, "all readings stored")
    assert _stored(influx, site) == TOTAL_READINGS
    assert count_field(influx, influx.bucket, "telemetry_seq", site, "seq") == TOTAL_READINGS
    prefix = f"{settings.mqtt_topic_root}/"
    assert dead_letters(influx, influx.bucket, prefix) == []


def test_messages_are_stored_rejects_dead_lettered_and_stats_written(
    broker: MosquittoProcess, influxdb: InfluxFixture, make_settings: SettingsFactory
) -> None:
    settings = make_settings(
        broker, influxdb, ingest_stats_interval_seconds=1.0, influxdb_token=None
    )
    root, site = settings.mqtt_topic_root, f"s-{settings.mqtt_topic_root}"
    now = time.time_ns()
    with ThreadedIngest(settings), Publisher(broker.host, broker.port, f"pub-{root}") as pub:
        _publish_readings(pub, settings, site, count=100, start_ns=now - 60 * NS)
        pub.publish(f"{root}/{site}/d1/telemetry", b'{"metrics": {"v": "hot"}}')
        pub.publish(f"{root}/bad*site/d1/telemetry", b"{}")
        pub.wait_all()
        wait_until(lambda: _stored(influxdb, site) == 100, 60, "100 readings")
        wait_until(
            lambda: len(dead_letters(influxdb, influxdb.bucket, f"{root}/")) == 2,
            30,
            "2 dead letters",
        )
    letters = {row["topic"]: row for row in dead_letters(influxdb, influxdb.bucket, f"{root}/")}
    assert letters[f"{root}/{site}/d1/telemetry"]["code"] == "schema"
    assert "metrics.v" in letters[f"{root}/{site}/d1/telemetry"]["reason"]
    assert letters[f"{root}/bad*site/d1/telemetry"]["code"] == "topic"
    stats = query(
        influxdb,
        """
        from(bucket: bucket) |> range(start: -1h)
          |> filter(fn: (r) => r._measurement == "ingest_stats" and r.instance == i)
          |> last()
        """,
        bucket=influxdb.bucket,
        i=settings.ingest_instance,
    )
    fields = {row["_field"]: row["_value"] for row in stats}
    assert fields["received"] >= 7  # messages: 5 of 20 readings, 2 bad
    assert fields["rejected_schema"] >= 1
    assert fields["rejected_topic"] >= 1
    assert {"write_latency_ms_p50", "lag_ms", "queue_depth", "interval_s"} <= set(fields)


def test_a_field_type_conflict_dead_letters_only_the_offending_message(
    broker: MosquittoProcess, influxdb: InfluxFixture, make_settings: SettingsFactory
) -> None:
    settings = make_settings(broker, influxdb, ingest_flush_interval_seconds=2.0)
    root, site = settings.mqtt_topic_root, f"s-{settings.mqtt_topic_root}"
    now = time.time_ns()
    with ThreadedIngest(settings), Publisher(broker.host, broker.port, f"pub-{root}") as pub:
        # `ok` is a boolean first; a later number for it is refused by InfluxDB, not by us.
        first = {"ts": (now - 10 * NS) / NS, "metrics": {"ok": True, "v": 1}}
        pub.publish(f"{root}/{site}/d1/telemetry", json.dumps(first).encode())
        pub.wait_all()
        wait_until(lambda: _stored(influxdb, site) == 1, 60, "the first reading")
        for i in range(10):
            metrics: dict[str, object] = {"v": i, "ok": 1.5 if i == 4 else False}
            body = {"ts": (now - (9 - i) * NS) / NS, "metrics": metrics}
            pub.publish(f"{root}/{site}/d1/telemetry", json.dumps(body).encode())
        pub.wait_all()
        wait_until(
            lambda: len(dead_letters(influxdb, influxdb.bucket, f"{root}/")) == 1,
            60,
            "the storage dead letter",
        )
        wait_until(lambda: _stored(influxdb, site) >= 10, 60, "the other readings")
    (letter,) = dead_letters(influxdb, influxdb.bucket, f"{root}/")
    assert letter["code"] == "storage"
    assert "conflict" in letter["reason"]
    assert '"ok": 1.5' in letter["payload"]
    # All 10 good readings are stored; the bad one's `v` may be stored by InfluxDB's partial
    # write of its other fields, which is why it is counted apart.
    values = query(
        influxdb,
        """
        from(bucket: bucket) |> range(start: 0)
          |> filter(fn: (r) => r._measurement == "telemetry" and r.site == site)
          |> filter(fn: (r) => r._field == "ok")
        """,
        bucket=influxdb.bucket,
        site=site,
    )
    assert len(values) == 10


def test_no_loss_when_the_ingest_is_killed_and_restarted(
    broker: MosquittoProcess, influxdb: InfluxFixture, make_settings: SettingsFactory
) -> None:
    settings = make_settings(broker, influxdb)
    root, site = settings.mqtt_topic_root, f"s-{settings.mqtt_topic_root}"
    started = time.monotonic()
    with (
        IngestProcess(settings) as ingest,
        Publisher(broker.host, broker.port, f"pub-{root}") as pub,
    ):
        killed = []

        def chaos(published: int) -> None:
            # Kill twice mid-stream; the second time restart only after publishing more.
            if published in (5_000, 12_000):
                # Kill while it works: once part of what the broker has is stored.
                pub.wait_all()
                stored = _stored(influxdb, site)
                wait_until(lambda: _stored(influxdb, site) > stored, 60, "progress", poll=0.05)
                ingest.kill()
                killed.append(published)
                time.sleep(0.5)
                ingest.start()

        _publish_readings(
            pub,
            settings,
            site,
            count=TOTAL_READINGS,
            start_ns=time.time_ns() - 3600 * NS,
            on_progress=chaos,
        )
        pub.wait_all()
        _assert_exactly_stored(influxdb, settings, site)
        assert killed == [5_000, 12_000]
        assert ingest.terminate() == 0
    print(f"20k readings with 2 kills: {time.monotonic() - started:.1f} s")


def test_no_loss_when_influxdb_is_down_for_10_seconds(
    broker: MosquittoProcess, fresh_influxdb: InfluxFixture, make_settings: SettingsFactory
) -> None:
    influx = fresh_influxdb
    settings = make_settings(broker, influx)
    root, site = settings.mqtt_topic_root, f"s-{settings.mqtt_topic_root}"
    started = time.monotonic()
    with (
        IngestProcess(settings) as ingest,
        Publisher(broker.host, broker.port, f"pub-{root}") as pub,
    ):

        def outage(published: int) -> None:
            if published == 6_000:
                influx.process.stop()
            if published == 14_000:
                time.sleep(10)
                influx.process.start()

        _publish_readings(
            pub,
            settings,
            site,
            count=TOTAL_READINGS,
            start_ns=time.time_ns() - 3600 * NS,
            on_progress=outage,
        )
        pub.wait_all()
        _assert_exactly_stored(influx, settings, site)
        assert ingest.terminate() == 0
        assert "retrying" in ingest.log_text()
    print(f"20k readings with a 10 s InfluxDB outage: {time.monotonic() - started:.1f} s")


def test_no_loss_when_the_broker_restarts_under_load(
    broker: MosquittoProcess, influxdb: InfluxFixture, make_settings: SettingsFactory
) -> None:
    settings = make_settings(broker, influxdb)
    root, site = settings.mqtt_topic_root, f"s-{settings.mqtt_topic_root}"
    with (
        IngestProcess(settings) as ingest,
        Publisher(broker.host, broker.port, f"pub-{root}") as pub,
    ):

        def restart(published: int) -> None:
            if published == 10_000:
                pub.wait_all()  # what the broker acknowledged, it must keep across restarts
                broker.restart()

        _publish_readings(
            pub,
            settings,
            site,
            count=TOTAL_READINGS,
            start_ns=time.time_ns() - 3600 * NS,
            on_progress=restart,
        )
        pub.wait_all()
        _assert_exactly_stored(influxdb, settings, site)
        assert ingest.terminate() == 0
        assert "mqtt connection to" in ingest.log_text()


def test_two_ingests_on_a_shared_subscription_split_the_stream(
    broker: MosquittoProcess, influxdb: InfluxFixture, make_settings: SettingsFactory
) -> None:
    settings = make_settings(broker, influxdb, mqtt_share_group="ingest")
    root, site = settings.mqtt_topic_root, f"s-{settings.mqtt_topic_root}"
    replica = settings.model_copy(
        update={"mqtt_client_id": f"{settings.mqtt_client_id}-b", "ingest_instance": "ingest-b"}
    )
    first = settings.model_copy(update={"ingest_instance": "ingest-a"})
    with IngestProcess(first, name="a") as a, IngestProcess(replica, name="b") as b:
        with Publisher(broker.host, broker.port, f"pub-{root}") as pub:
            _publish_readings(
                pub, settings, site, count=TOTAL_READINGS, start_ns=time.time_ns() - 3600 * NS
            )
            pub.wait_all()
        _assert_exactly_stored(influxdb, settings, site)
        assert a.terminate() == 0
        assert b.terminate() == 0
    accepted = {}
    for instance in ("ingest-a", "ingest-b"):
        rows = query(
            influxdb,
            """
            from(bucket: bucket) |> range(start: -1h)
              |> filter(fn: (r) => r._measurement == "ingest_stats" and r.instance == i)
              |> filter(fn: (r) => r._field == "accepted")
              |> last()
            """,
            bucket=influxdb.bucket,
            i=instance,
        )
        accepted[instance] = rows[0]["_value"]
    messages = TOTAL_READINGS // READINGS_PER_MESSAGE
    assert accepted["ingest-a"] > 0
    assert accepted["ingest-b"] > 0
    assert accepted["ingest-a"] + accepted["ingest-b"] >= messages
