"""Zero trust on the wire and in the store, against a real Mosquitto and a real InfluxDB.

The broker runs the configuration `edgewatch stack up` writes: TLS plus an authenticated
loopback listener, one account per device with an ACL, the ingest's read-only account.
"""

from __future__ import annotations

import queue
import secrets
import shutil
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from stack.processes import MosquittoProcess, free_port
from stack.security import (
    INGEST_ACCOUNT,
    AccountStore,
    MqttAccount,
    create_certificates,
    device_account,
    secure_listener_conf,
)
from stack.testing import InfluxFixture

pytestmark = pytest.mark.integration

ROOT = "edgewatch"


@dataclass(frozen=True)
class SecureBroker:
    process: MosquittoProcess
    plain_port: int
    tls_port: int
    ca: Path
    passwords: dict[str, str]


@pytest.fixture
def secure_broker() -> Iterator[SecureBroker]:
    workdir = Path(tempfile.mkdtemp(prefix="edgewatch-secure-"))
    try:
        create_certificates(workdir / "pki")
        store = AccountStore(directory=workdir / "accounts", root=ROOT)
        passwords = {
            "a": store.add(device_account("plant-a", "cam-1")),
            "b": store.add(device_account("plant-a", "cam-2")),
            INGEST_ACCOUNT: store.add(MqttAccount(INGEST_ACCOUNT, "ingest")),
        }
        plain, tls = free_port(), free_port()
        proc = MosquittoProcess(
            port=plain,
            data_dir=workdir / "mosquitto",
            listener_conf=secure_listener_conf(
                tls_port=tls,
                plain_port=plain,
                cert_dir=workdir / "pki",
                password_file=store.password_file,
                acl_file=store.acl_file,
            ),
        )
        proc.start()
        try:
            yield SecureBroker(proc, plain, tls, workdir / "pki" / "ca.crt", passwords)
        finally:
            proc.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _client(username: str | None, password: str | None, *, ca: Path | None = None) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"sec-{secrets.token_hex(4)}",
        protocol=mqtt.MQTTv5,
    )
    if username is not None:
        client.username_pw_set(username, password)
    if ca is not None:
        client.tls_set(ca_certs=str(ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return client


def _connect(client: mqtt.Client, port: int) -> ReasonCode | None:
    """Connect and return the CONNACK reason (None when the transport itself failed)."""
    outcome: queue.Queue[ReasonCode | None] = queue.Queue()
    client.on_connect = lambda _c, _u, _f, reason, _p: outcome.put(reason)
    try:
        client.connect("127.0.0.1", port)
    except (OSError, ssl.SSLError):
        return None
    client.loop_start()
    try:
        return outcome.get(timeout=10)
    except queue.Empty:
        return None


def _stop(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def _listen(broker: SecureBroker, topic: str) -> tuple[mqtt.Client, queue.Queue[str]]:
    got: queue.Queue[str] = queue.Queue()
    ingest = _client(INGEST_ACCOUNT, broker.passwords[INGEST_ACCOUNT])
    ingest.on_message = lambda _c, _u, msg: got.put(msg.topic)
    subscribed: queue.Queue[list[ReasonCode]] = queue.Queue()
    ingest.on_subscribe = lambda _c, _u, _m, codes, _p: subscribed.put(codes)
    reason = _connect(ingest, broker.plain_port)
    assert reason is not None and not reason.is_failure
    ingest.subscribe(topic, qos=1)
    assert not subscribed.get(timeout=10)[0].is_failure
    return ingest, got


def test_a_device_cannot_publish_as_another_device(secure_broker: SecureBroker) -> None:
    ingest, got = _listen(secure_broker, f"{ROOT}/#")
    device_a = _client("plant-a.cam-1", secure_broker.passwords["a"])
    assert _connect(device_a, secure_broker.plain_port) is not None
    try:
        device_a.publish(f"{ROOT}/plant-a/cam-2/telemetry", b"{}", qos=1).wait_for_publish(10)
        device_a.publish(f"{ROOT}/plant-a/cam-1/telemetry", b"{}", qos=1).wait_for_publish(10)
        # The ingest sees only the device's own topic: the forged one was dropped by the broker.
        assert got.get(timeout=10) == f"{ROOT}/plant-a/cam-1/telemetry"
        with pytest.raises(queue.Empty):
            got.get(timeout=1)
    finally:
        _stop(device_a)
        _stop(ingest)


def test_a_device_cannot_read_the_fleet(secure_broker: SecureBroker) -> None:
    device_a = _client("plant-a.cam-1", secure_broker.passwords["a"])
    codes: queue.Queue[list[ReasonCode]] = queue.Queue()
    seen: queue.Queue[str] = queue.Queue()
    device_a.on_subscribe = lambda _c, _u, _m, reasons, _p: codes.put(reasons)
    device_a.on_message = lambda _c, _u, msg: seen.put(msg.topic)
    device_b = _client("plant-a.cam-2", secure_broker.passwords["b"])
    assert _connect(device_a, secure_broker.plain_port) is not None
    assert _connect(device_b, secure_broker.plain_port) is not None
    ingest, got = _listen(secure_broker, f"{ROOT}/#")
    try:
        device_a.subscribe(f"{ROOT}/#", qos=1)
        # Mosquitto 2.0 may grant the filter, but its ACL check on delivery sends nothing.
        codes.get(timeout=10)
        device_b.publish(f"{ROOT}/plant-a/cam-2/status", b"{}", qos=1).wait_for_publish(10)
        assert got.get(timeout=10) == f"{ROOT}/plant-a/cam-2/status"
        with pytest.raises(queue.Empty):
            seen.get(timeout=1)
    finally:
        _stop(device_a)
        _stop(device_b)
        _stop(ingest)


def test_clients_without_or_with_wrong_credentials_are_refused(
    secure_broker: SecureBroker,
) -> None:
    anonymous = _client(None, None)
    reason = _connect(anonymous, secure_broker.plain_port)
    assert reason is not None and reason.is_failure
    _stop(anonymous)
    wrong = _client("plant-a.cam-1", "not-the-password")
    reason = _connect(wrong, secure_broker.plain_port)
    assert reason is not None and reason.is_failure
    _stop(wrong)


def test_tls_listener_accepts_a_client_that_trusts_the_ca_and_refuses_plain_text(
    secure_broker: SecureBroker,
) -> None:
    trusted = _client("plant-a.cam-1", secure_broker.passwords["a"], ca=secure_broker.ca)
    reason = _connect(trusted, secure_broker.tls_port)
    assert reason is not None and not reason.is_failure
    cipher = trusted.socket().cipher()  # type: ignore[union-attr]
    assert cipher is not None and cipher[1] in ("TLSv1.2", "TLSv1.3")
    _stop(trusted)
    plain = _client("plant-a.cam-1", secure_broker.passwords["a"])
    assert _connect(plain, secure_broker.tls_port) is None
    plain.loop_stop()


def test_ingest_token_can_neither_read_nor_delete_what_it_does_not_write(
    influxdb: InfluxFixture,
) -> None:
    # InfluxDB 2.x authorises a delete by the bucket's write permission (it has no delete
    # permission of its own), so the ingest token can delete only in the raw bucket it must
    # write; operators' actions and the rollups are out of its reach (README, Security).
    site = f"s{secrets.token_hex(4)}"
    line = f'alert_action,site={site},device=d,type=t action="ack"'
    with InfluxDBClient(url=influxdb.url, token=influxdb.admin_token, org=influxdb.org) as admin:
        admin.write_api(write_options=SYNCHRONOUS).write(bucket=influxdb.bucket_ops, record=line)
    with InfluxDBClient(url=influxdb.url, token=influxdb.ingest_token, org=influxdb.org) as c:
        with pytest.raises(ApiException):
            c.query_api().query(
                "from(bucket: b) |> range(start: -1h)", params={"b": influxdb.bucket}
            )
        for bucket in (influxdb.bucket_ops, influxdb.bucket_1m, influxdb.bucket_1h):
            with pytest.raises(ApiException):
                c.delete_api().delete(
                    "1970-01-01T00:00:00Z",
                    "2100-01-01T00:00:00Z",
                    f'site="{site}"',
                    bucket=bucket,
                    org=influxdb.org,
                )
    with InfluxDBClient(url=influxdb.url, token=influxdb.admin_token, org=influxdb.org) as admin:
        rows = admin.query_api().query(
            "from(bucket: b) |> range(start: -1h) |> filter(fn: (r) => r.site == s)",
            params={"b": influxdb.bucket_ops, "s": site},
        )
    assert sum(len(t.records) for t in rows) == 1


def test_dashboard_token_cannot_write_telemetry(influxdb: InfluxFixture) -> None:
    with (
        InfluxDBClient(url=influxdb.url, token=influxdb.dashboard_token, org=influxdb.org) as c,
        pytest.raises(ApiException),
    ):
        c.write_api(write_options=SYNCHRONOUS).write(
            bucket=influxdb.bucket, record="telemetry,site=x,device=y x=1.0"
        )
