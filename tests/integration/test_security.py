"""Zero trust on the wire and in the store, against a real Mosquitto and a real InfluxDB.

The broker runs the configuration `edgewatch stack up` writes: a TLS listener that requires a
device certificate, a TLS listener with passwords, an authenticated loopback listener, one
account per device with an ACL, the ingest's read-only account.
"""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import ssl
import subprocess
import sys
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

from shared.mqtt_client import new_mqtt_client
from stack.processes import MosquittoProcess, free_port
from stack.security import (
    INGEST_ACCOUNT,
    AccountStore,
    MqttAccount,
    create_certificates,
    device_account,
    issue_device_certificate,
    revoke_device_certificate,
    secure_listener_conf,
)
from stack.testing import InfluxFixture

pytestmark = pytest.mark.integration

ROOT = "edgewatch"


@dataclass(frozen=True)
class SecureBroker:
    process: MosquittoProcess
    plain_port: int
    tls_port: int  # device certificate required
    password_tls_port: int
    ca: Path
    passwords: dict[str, str]
    pki: Path


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
        plain, tls, password_tls = free_port(), free_port(), free_port()
        proc = MosquittoProcess(
            port=plain,
            data_dir=workdir / "mosquitto",
            listener_conf=secure_listener_conf(
                tls_port=tls,
                password_tls_port=password_tls,
                plain_port=plain,
                cert_dir=workdir / "pki",
                password_file=store.password_file,
                acl_file=store.acl_file,
            ),
        )
        proc.start()
        try:
            pki = workdir / "pki"
            yield SecureBroker(proc, plain, tls, password_tls, pki / "ca.crt", passwords, pki)
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
    reason = _connect(trusted, secure_broker.password_tls_port)
    assert reason is not None and not reason.is_failure
    cipher = trusted.socket().cipher()  # type: ignore[union-attr]
    assert cipher is not None and cipher[1] in ("TLSv1.2", "TLSv1.3")
    _stop(trusted)
    plain = _client("plant-a.cam-1", secure_broker.passwords["a"])
    assert _connect(plain, secure_broker.password_tls_port) is None
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


def _device_by_certificate(broker: SecureBroker, site: str, device: str) -> mqtt.Client:
    """A device client built by the shared factory with its own certificate and no password."""
    issued = issue_device_certificate(broker.pki, site, device)
    return new_mqtt_client(
        client_id=f"cert-{secrets.token_hex(4)}",
        tls_ca=issued.ca,
        tls_cert=issued.certificate,
        tls_key=issued.key,
    )


def _refused(client: mqtt.Client, port: int) -> bool:
    """Whether the broker refused the client: no TLS session, or a failing CONNACK."""
    reason = _connect(client, port)
    client.loop_stop()
    return reason is None or reason.is_failure


def test_a_device_with_a_valid_certificate_publishes_as_itself(
    secure_broker: SecureBroker,
) -> None:
    ingest, got = _listen(secure_broker, f"{ROOT}/#")
    device_a = _device_by_certificate(secure_broker, "plant-a", "cam-1")
    try:
        reason = _connect(device_a, secure_broker.tls_port)
        assert reason is not None and not reason.is_failure
        device_a.publish(f"{ROOT}/plant-a/cam-1/telemetry", b"{}", qos=1).wait_for_publish(10)
        assert got.get(timeout=10) == f"{ROOT}/plant-a/cam-1/telemetry"
    finally:
        _stop(device_a)
        _stop(ingest)


def test_a_certificate_for_a_cannot_publish_as_b(secure_broker: SecureBroker) -> None:
    ingest, got = _listen(secure_broker, f"{ROOT}/#")
    device_a = _device_by_certificate(secure_broker, "plant-a", "cam-1")
    # The user name a client sends is ignored: the certificate's CN is the identity.
    device_a.username_pw_set("plant-a.cam-2")
    try:
        reason = _connect(device_a, secure_broker.tls_port)
        assert reason is not None and not reason.is_failure
        device_a.publish(f"{ROOT}/plant-a/cam-2/telemetry", b"{}", qos=1).wait_for_publish(10)
        device_a.publish(f"{ROOT}/plant-a/cam-1/telemetry", b"{}", qos=1).wait_for_publish(10)
        assert got.get(timeout=10) == f"{ROOT}/plant-a/cam-1/telemetry"
        with pytest.raises(queue.Empty):
            got.get(timeout=1)
    finally:
        _stop(device_a)
        _stop(ingest)


def test_no_certificate_or_a_password_is_refused_on_the_certificate_listener(
    secure_broker: SecureBroker,
) -> None:
    with_password = _client("plant-a.cam-1", secure_broker.passwords["a"], ca=secure_broker.ca)
    assert _refused(with_password, secure_broker.tls_port)
    # The same device's password still works on the password listener.
    again = _client("plant-a.cam-1", secure_broker.passwords["a"], ca=secure_broker.ca)
    reason = _connect(again, secure_broker.password_tls_port)
    assert reason is not None and not reason.is_failure
    _stop(again)


def test_a_certificate_from_another_ca_is_refused(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    create_certificates(tmp_path / "other-pki")
    foreign = issue_device_certificate(tmp_path / "other-pki", "plant-a", "cam-1")
    client = new_mqtt_client(
        client_id=f"foreign-{secrets.token_hex(4)}",
        tls_ca=secure_broker.ca,
        tls_cert=foreign.certificate,
        tls_key=foreign.key,
    )
    assert _refused(client, secure_broker.tls_port)


def test_a_revoked_certificate_is_refused_after_the_broker_rereads_its_crl(
    secure_broker: SecureBroker,
) -> None:
    before = _device_by_certificate(secure_broker, "plant-a", "cam-2")
    reason = _connect(before, secure_broker.tls_port)
    assert reason is not None and not reason.is_failure
    _stop(before)
    cert = secure_broker.pki / "devices" / "plant-a.cam-2.crt"
    assert cert.exists()
    revoke_device_certificate(secure_broker.pki, "plant-a", "cam-2")
    secure_broker.process.restart()  # what `edgewatch stack certs revoke` does to the stack
    revoked = new_mqtt_client(
        client_id=f"revoked-{secrets.token_hex(4)}",
        tls_ca=secure_broker.ca,
        tls_cert=cert,
        tls_key=secure_broker.pki / "devices" / "plant-a.cam-2.key",
    )
    assert _refused(revoked, secure_broker.tls_port)
    # Another device's certificate is untouched by the revocation.
    other = _device_by_certificate(secure_broker, "plant-a", "cam-1")
    reason = _connect(other, secure_broker.tls_port)
    assert reason is not None and not reason.is_failure
    _stop(other)


def test_edgewatch_agent_signs_in_with_its_certificate(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    ingest, got = _listen(secure_broker, f"{ROOT}/plant-a/cam-1/telemetry")
    issued = issue_device_certificate(secure_broker.pki, "plant-a", "cam-1")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MQTT_", "INFLUXDB_V2_", "EDGEWATCH_"))
    }
    env.update(
        MQTT_HOST="127.0.0.1",
        MQTT_TLS_PORT=str(secure_broker.tls_port),
        MQTT_TLS_CA=str(issued.ca),
        MQTT_TLS_CERT=str(issued.certificate),
        MQTT_TLS_KEY=str(issued.key),
        MQTT_TOPIC_ROOT=ROOT,
        EDGEWATCH_STATE_DIR=str(tmp_path / "state"),
    )
    log = (tmp_path / "agent.log").open("w")
    agent = subprocess.Popen(
        [str(Path(sys.executable).parent / "edgewatch"), "agent", "--site", "plant-a",
         "--device", "cam-1", "--spool", str(tmp_path / "spool.db")],
        stdin=subprocess.PIPE,
        stderr=log,
        env=env,
        text=True,
    )  # fmt: skip
    try:
        assert agent.stdin is not None
        agent.stdin.write('{"metrics": {"cpu_temp_c": 61.5}}\n')
        agent.stdin.flush()
        # No user name or password was given: the broker knew it by its certificate.
        assert got.get(timeout=30) == f"{ROOT}/plant-a/cam-1/telemetry", (
            tmp_path / "agent.log"
        ).read_text()
        agent.stdin.close()  # EOF: the agent stops cleanly
        assert agent.wait(timeout=30) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        log.close()
        _stop(ingest)


def test_the_ingest_reads_a_stream_over_tls_whole_and_in_order(
    secure_broker: SecureBroker,
) -> None:
    # The ingest's client reads the socket in large chunks (shared/mqtt_socket.py); over TLS
    # the bytes come through the TLS layer's own buffer as well, so both must be drained.
    got: queue.Queue[bytes] = queue.Queue()
    subscribed: queue.Queue[list[ReasonCode]] = queue.Queue()
    ingest = new_mqtt_client(
        client_id=f"sec-{secrets.token_hex(4)}",
        username=INGEST_ACCOUNT,
        password=secure_broker.passwords[INGEST_ACCOUNT],
        tls_ca=secure_broker.ca,
        buffered_reads=True,
    )
    ingest.on_message = lambda _c, _u, msg: got.put(msg.payload)
    ingest.on_subscribe = lambda _c, _u, _m, codes, _p: subscribed.put(codes)
    reason = _connect(ingest, secure_broker.password_tls_port)
    assert reason is not None and not reason.is_failure
    ingest.subscribe(f"{ROOT}/#", qos=1)
    assert not subscribed.get(timeout=10)[0].is_failure
    device = _device_by_certificate(secure_broker, "plant-a", "cam-1")
    sent = [f'{{"n": {n}, "pad": "{"x" * (n % 700)}"}}'.encode() for n in range(500)]
    try:
        reason = _connect(device, secure_broker.tls_port)
        assert reason is not None and not reason.is_failure
        infos = [device.publish(f"{ROOT}/plant-a/cam-1/telemetry", p, qos=1) for p in sent]
        for info in infos:
            info.wait_for_publish(10)
        assert [got.get(timeout=10) for _ in sent] == sent
    finally:
        _stop(device)
        _stop(ingest)
