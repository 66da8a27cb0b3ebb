"""The compose deployment's secrets, made by `stack compose-init`, against real services.

No container engine runs here, so the compose broker configuration (deploy/mosquitto/
mosquitto.conf) is run by a real Mosquitto with its container paths pointed at the files
compose-init made, and the tokens are checked against the real InfluxDB.
"""

from __future__ import annotations

import queue
import secrets
import shlex
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgewatch.settings import load_settings
from stack.bootstrap import load_credentials
from stack.compose_init import compose_init
from stack.processes import free_port, tcp_accepts
from stack.testing import InfluxFixture

pytestmark = pytest.mark.integration

DEPLOY_CONF = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "mosquitto.conf"


def _env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        values[key] = shlex.split(value)[0] if value else ""
    return values


@pytest.fixture
def compose_state(tmp_path: Path, fresh_influxdb: InfluxFixture) -> tuple[Path, str]:
    # Its own InfluxDB: a bootstrap with new credentials rotates the role tokens, which
    # would pull the session's tokens from under the other tests.
    root = f"c{secrets.token_hex(4)}"
    settings = load_settings(
        EDGEWATCH_STATE_DIR=tmp_path / "state",
        INFLUXDB_V2_URL=fresh_influxdb.url,
        INFLUXDB_V2_ORG=fresh_influxdb.org,
        INFLUXDB_V2_TOKEN=fresh_influxdb.admin_token,
        MQTT_HOST="mosquitto",
        MQTT_TOPIC_ROOT=root,
    )
    out = compose_init(settings, broker_hostname="mosquitto", mosquitto_uid=None, service_uid=None)
    return out, root


@pytest.fixture
def compose_broker(compose_state: tuple[Path, str], tmp_path: Path) -> Iterator[dict[str, int]]:
    out, _ = compose_state
    # "tls": the password TLS listener the services use; "cert": the device certificate one.
    tls, cert, plain = free_port(), free_port(), free_port()
    (tmp_path / "data").mkdir()
    conf = (
        DEPLOY_CONF.read_text()
        .replace("/mosquitto/secrets/", f"{out / 'mosquitto'}/")
        .replace("/mosquitto/data/", f"{tmp_path / 'data'}/")
        .replace("listener 8883 0.0.0.0", f"listener {cert} 127.0.0.1")
        .replace("listener 8884 0.0.0.0", f"listener {tls} 127.0.0.1")
        .replace("listener 1883 127.0.0.1", f"listener {plain} 127.0.0.1")
    )
    # In the container the files belong to the broker's own user; here that user is root.
    (tmp_path / "mosquitto.conf").write_text("user root\n" + conf)
    with (tmp_path / "mosquitto.log").open("wb") as log:
        proc = subprocess.Popen(
            ["/usr/sbin/mosquitto", "-c", str(tmp_path / "mosquitto.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while not all(tcp_accepts("127.0.0.1", port) for port in (tls, cert, plain)):
            assert proc.poll() is None, (tmp_path / "mosquitto.log").read_text()
            assert time.monotonic() < deadline, "the compose broker did not start"
            time.sleep(0.1)
        yield {"tls": tls, "cert": cert, "plain": plain}
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_each_service_gets_only_its_own_secrets(compose_state: tuple[Path, str]) -> None:
    out, _ = compose_state
    made = load_credentials(out.parent / "credentials.json")
    for path in out.rglob("*"):
        if path.is_file():
            assert made.admin_token not in path.read_text(), path
    ingest = _env(out / "ingest" / "env")
    simulator = _env(out / "simulator" / "env")
    dashboard = _env(out / "dashboard" / "env")
    assert ingest["INFLUXDB_V2_TOKEN"] == made.ingest_token
    assert ingest["MQTT_USERNAME"] == "ingest"
    assert ingest["MQTT_TLS_CA"] == "/run/edgewatch/ca.crt"
    assert ingest["MQTT_HOST"] == "mosquitto"
    assert "INFLUXDB_V2_TOKEN" not in simulator
    assert simulator["MQTT_USERNAME"] == "fleet"
    assert dashboard["INFLUXDB_V2_TOKEN"] == made.dashboard_token
    assert "MQTT_PASSWORD" not in dashboard
    assert (out / "mosquitto" / "server.key").stat().st_mode & 0o077 == 0


def _client(env: dict[str, str], ca: Path | None) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"c-{secrets.token_hex(3)}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(env["MQTT_USERNAME"], env["MQTT_PASSWORD"])
    if ca is not None:
        client.tls_set(ca_certs=str(ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return client


def test_the_compose_broker_carries_the_fleet_to_the_ingest_over_tls(
    compose_state: tuple[Path, str], compose_broker: dict[str, int]
) -> None:
    out, root = compose_state
    got: queue.Queue[str] = queue.Queue()
    subscribed: queue.Queue[int] = queue.Queue()
    ingest = _client(_env(out / "ingest" / "env"), out / "ingest" / "ca.crt")
    ingest.on_message = lambda _c, _u, msg: got.put(msg.topic)
    ingest.on_subscribe = lambda *_a: subscribed.put(1)
    ingest.connect("127.0.0.1", compose_broker["tls"])
    ingest.loop_start()
    fleet = _client(_env(out / "simulator" / "env"), out / "simulator" / "ca.crt")
    fleet.connect("127.0.0.1", compose_broker["tls"])
    fleet.loop_start()
    try:
        ingest.subscribe(f"{root}/#", qos=1)
        subscribed.get(timeout=10)
        fleet.publish(f"{root}/plant-a/cam-1/telemetry", b"{}", qos=1).wait_for_publish(10)
        assert got.get(timeout=10) == f"{root}/plant-a/cam-1/telemetry"
    finally:
        for client in (ingest, fleet):
            client.disconnect()
            client.loop_stop()


def test_the_healthcheck_account_connects_and_anonymous_clients_do_not(
    compose_state: tuple[Path, str], compose_broker: dict[str, int]
) -> None:
    out, _ = compose_state
    password = (out / "mosquitto" / "health.password").read_text()
    ok = subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(compose_broker["plain"]),
            "-u",
            "health",
            "-P",
            password,
            "-t",
            "health/ping",
            "-m",
            "x",
        ],
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    anonymous = subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(compose_broker["plain"]),
            "-t",
            "health/ping",
            "-m",
            "x",
        ],
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert anonymous.returncode != 0
