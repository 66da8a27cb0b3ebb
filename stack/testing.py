"""stack room: what the test fixtures (tests/conftest.py) need beyond `stack/ephemeral.py`.

The processes themselves are started by `stack/ephemeral.py`, which the benchmarks use too;
this module adds only what is about tests: settings pointing at those processes, on a topic
root no other test uses. Kept here rather than in conftest so that tests can import the types
(`InfluxFixture`). Touches: nothing.
"""

from __future__ import annotations

import secrets

from edgewatch.settings import Settings, load_settings
from stack.ephemeral import InfluxFixture, cached_influxd, running_broker, running_influxdb
from stack.processes import MosquittoProcess

__all__ = [
    "InfluxFixture",
    "cached_influxd",
    "running_broker",
    "running_influxdb",
    "settings_for",
    "unique_topic_root",
]


def unique_topic_root() -> str:
    """A topic root no other test uses, so tests never see each other's messages."""
    return f"t{secrets.token_hex(4)}"


def settings_for(
    broker: MosquittoProcess | None, influxdb: InfluxFixture | None, **overrides: object
) -> Settings:
    """Settings pointing at the fixture processes, with the admin token and a unique root."""
    root = unique_topic_root()
    values: dict[str, object] = {
        "mqtt_topic_root": root,
        "mqtt_client_id": f"edgewatch-ingest-{root}",
    }
    if broker is not None:
        values.update(mqtt_host=broker.host, mqtt_port=broker.port)
    if influxdb is not None:
        values.update(
            influxdb_url=influxdb.url,
            influxdb_org=influxdb.org,
            influxdb_token=influxdb.admin_token,
            ingest_token=influxdb.ingest_token,
            dashboard_token=influxdb.dashboard_token,
            influxdb_bucket=influxdb.bucket,
            influxdb_bucket_1m=influxdb.bucket_1m,
            influxdb_bucket_1h=influxdb.bucket_1h,
            influxdb_bucket_ops=influxdb.bucket_ops,
            influxdb_bucket_state=influxdb.bucket_state,
        )
    values.update(overrides)
    return load_settings(**values)
