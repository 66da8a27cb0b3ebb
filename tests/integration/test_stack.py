"""The local stack against real Mosquitto and influxd processes started by the fixtures."""

from __future__ import annotations

import json
import os
import queue
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.task_create_request import TaskCreateRequest
from influxdb_client.rest import ApiException
from paho.mqtt.packettypes import PacketTypes

from shared.mqtt_client import new_mqtt_client
from stack.bootstrap import OLD_ROLLUP_TASKS, bootstrap
from stack.processes import MosquittoProcess, free_port, pid_alive
from stack.testing import InfluxFixture

pytestmark = pytest.mark.integration

NS = 1_000_000_000
MINUTE_NS = 60 * NS
HOUR_NS = 3600 * NS


def _site() -> str:
    """A site tag of this test only: the session's InfluxDB is shared."""
    return f"s{secrets.token_hex(4)}"


def _query(fx: InfluxFixture, token: str, flux: str, **params: object) -> list[dict[str, object]]:
    with InfluxDBClient(url=fx.url, token=token, org=fx.org) as client:
        tables = client.query_api().query(flux, params=params)
    return [record.values for table in tables for record in table.records]


def _write(fx: InfluxFixture, token: str, bucket: str, lines: list[str]) -> None:
    with InfluxDBClient(url=fx.url, token=token, org=fx.org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket=bucket, record=lines)


def test_points_written_come_back_through_a_parameterised_query(influxdb: InfluxFixture) -> None:
    site = _site()
    now = time.time_ns()
    _write(
        influxdb,
        influxdb.ingest_token,
        influxdb.bucket,
        [
            f"telemetry,site={site},device=d1 cpu_temp_c=61.5,camera_ok=true {now - 2 * NS}",
            f"telemetry,site={site},device=d1 cpu_temp_c=62.5,camera_ok=false {now - NS}",
        ],
    )
    rows = _query(
        influxdb,
        influxdb.dashboard_token,
        """from(bucket: bucket)
            |> range(start: -5m)
            |> filter(fn: (r) => r._measurement == "telemetry" and r.site == site)
            |> filter(fn: (r) => r._field == "cpu_temp_c")""",
        bucket=influxdb.bucket,
        site=site,
    )
    assert [r["_value"] for r in rows] == [61.5, 62.5]
    assert {r["device"] for r in rows} == {"d1"}


def test_tokens_have_least_privilege(influxdb: InfluxFixture) -> None:
    line = [f'alert_action,site={_site()},device=d1,type=x action="ack"']
    with pytest.raises(ApiException) as denied:
        _write(influxdb, influxdb.ingest_token, influxdb.bucket_ops, line)
    assert denied.value.status in (401, 403, 404)
    with pytest.raises(ApiException) as denied:
        _write(influxdb, influxdb.dashboard_token, influxdb.bucket, line)
    assert denied.value.status in (401, 403, 404)
    with pytest.raises(ApiException):
        _query(influxdb, influxdb.ingest_token, "from(bucket: b) |> range(start: -1m)", b="x")
    _write(influxdb, influxdb.dashboard_token, influxdb.bucket_ops, line)


def test_bootstrap_twice_changes_nothing(influxdb: InfluxFixture) -> None:
    before = influxdb.credentials_path.read_text()
    admin = InfluxDBClient(url=influxdb.url, token=influxdb.admin_token)
    auths_before = admin.authorizations_api().find_authorizations()
    creds = bootstrap(
        url=influxdb.url,
        org=influxdb.org,
        buckets=influxdb.buckets,
        credentials_path=influxdb.credentials_path,
    )
    assert (creds.admin_token, creds.ingest_token, creds.dashboard_token) == (
        influxdb.admin_token,
        influxdb.ingest_token,
        influxdb.dashboard_token,
    )
    assert influxdb.credentials_path.read_text() == before
    assert influxdb.credentials_path.stat().st_mode & 0o777 == 0o600
    auths_after = admin.authorizations_api().find_authorizations()
    assert [a.id for a in auths_after] == [a.id for a in auths_before]
    tasks = admin.tasks_api().find_tasks(org_id=influxdb.org_id)
    assert [t.name for t in tasks] == []  # the rollup service does the rollups
    # By name: other tests' buckets may push ours past the API's first page.
    for bucket in (influxdb.bucket, influxdb.bucket_1m, influxdb.bucket_1h, influxdb.bucket_ops):
        found = admin.buckets_api().find_buckets(org_id=influxdb.org_id, name=bucket).buckets
        assert [b.name for b in found] == [bucket]
    admin.close()  # type: ignore[no-untyped-call]


def test_bootstrap_removes_the_rollup_tasks_of_earlier_versions(
    fresh_influxdb: InfluxFixture,
) -> None:
    fx = fresh_influxdb
    with InfluxDBClient(url=fx.url, token=fx.admin_token) as admin:
        tasks = admin.tasks_api()
        for name in OLD_ROLLUP_TASKS:
            flux = (
                f'option task = {{name: "{name}", every: 1h}}\n'
                f'from(bucket: "{fx.bucket}") |> range(start: -1m)'
            )
            request = TaskCreateRequest(org_id=fx.org_id, flux=flux, status="active")
            tasks.create_task(task_create_request=request)
        assert len(tasks.find_tasks(org_id=fx.org_id)) == 2
        bootstrap(url=fx.url, org=fx.org, buckets=fx.buckets, credentials_path=fx.credentials_path)
        assert tasks.find_tasks(org_id=fx.org_id) == []


def test_fresh_influxdb_keeps_data_across_restart(fresh_influxdb: InfluxFixture) -> None:
    site = _site()
    _write(
        fresh_influxdb,
        fresh_influxdb.ingest_token,
        fresh_influxdb.bucket,
        [f"telemetry,site={site},device=d1 cpu=7.0"],
    )
    fresh_influxdb.process.restart()
    rows = _query(
        fresh_influxdb,
        fresh_influxdb.dashboard_token,
        "from(bucket: b) |> range(start: -5m) |> filter(fn: (r) => r.site == site)",
        b=fresh_influxdb.bucket,
        site=site,
    )
    assert [r["_value"] for r in rows] == [7.0]


def _client(broker: MosquittoProcess, client_id: str, *, clean_start: bool = True) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
    )
    client.connect(
        broker.host,
        broker.port,
        clean_start=clean_start,
        properties=_session_properties(),
    )
    return client


def _session_properties() -> mqtt.Properties:
    props = mqtt.Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    return props


@pytest.fixture
def received() -> Iterator[queue.Queue[tuple[str, bytes, int]]]:
    yield queue.Queue()


def _subscribe(
    broker: MosquittoProcess,
    topic: str,
    inbox: queue.Queue[tuple[str, bytes, int]],
    client_id: str,
    *,
    clean_start: bool = True,
) -> mqtt.Client:
    subscribed = queue.Queue[int]()
    client = _client(broker, client_id, clean_start=clean_start)
    client.on_message = lambda _c, _u, msg: inbox.put((msg.topic, msg.payload, msg.qos))
    client.on_subscribe = lambda _c, _u, mid, _codes, _p: subscribed.put(mid)
    client.loop_start()
    client.subscribe(topic, qos=1)
    subscribed.get(timeout=10)
    return client


def _publish(broker: MosquittoProcess, topic: str, payload: bytes) -> None:
    client = _client(broker, f"pub-{secrets.token_hex(3)}")
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_qos1_message_reaches_a_subscriber(
    broker: MosquittoProcess, received: queue.Queue[tuple[str, bytes, int]]
) -> None:
    topic = f"t{secrets.token_hex(4)}/site1/dev1/telemetry"
    sub = _subscribe(broker, topic, received, "sub-1")
    try:
        _publish(broker, topic, b'{"metrics": {"cpu_temp_c": 61.5}}')
        assert received.get(timeout=10) == (topic, b'{"metrics": {"cpu_temp_c": 61.5}}', 1)
    finally:
        sub.disconnect()
        sub.loop_stop()


def test_broker_keeps_queued_messages_for_a_persistent_session_across_restart(
    broker: MosquittoProcess, received: queue.Queue[tuple[str, bytes, int]]
) -> None:
    topic = f"t{secrets.token_hex(4)}/site1/dev1/telemetry"
    # Mosquitto 2.0 writes a session to disk only if it was opened with clean_start=False,
    # even with a session expiry: a consumer that must survive broker restarts (the ingest)
    # connects that way every time, not with paho's default "clean on first connect only".
    sub = _subscribe(broker, topic, received, "paused-consumer", clean_start=False)
    sub.disconnect()
    sub.loop_stop()
    for i in range(50):
        _publish(broker, topic, str(i).encode())
    broker.restart()
    sub = _subscribe(broker, topic, received, "paused-consumer", clean_start=False)
    try:
        got = [received.get(timeout=10)[1] for _ in range(50)]
        assert sorted(int(p) for p in got) == list(range(50))
    finally:
        sub.disconnect()
        sub.loop_stop()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgewatch.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_stack_cli_up_twice_status_env_down(tmp_path: Path) -> None:
    influx_port = free_port()
    env = {
        **os.environ,
        "EDGEWATCH_STATE_DIR": str(tmp_path / "state"),
        "MQTT_PORT": str(free_port()),
        "MQTT_TLS_PORT": str(free_port()),
        "MQTT_TLS_PASSWORD_PORT": str(free_port()),
        "INFLUXDB_V2_URL": f"http://127.0.0.1:{influx_port}",
    }
    pids: list[int] = []
    try:
        first = _cli(env, "stack", "up")
        assert first.returncode == 0, first.stderr
        run = tmp_path / "state" / "run"
        pids = [int((run / f"{name}.pid").read_text()) for name in ("mosquitto", "influxd")]
        second = _cli(env, "stack", "up")
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stderr
        assert [int((run / f"{n}.pid").read_text()) for n in ("mosquitto", "influxd")] == pids

        status = _cli(env, "stack", "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count("healthy") == 2
        with urllib.request.urlopen(f"http://127.0.0.1:{influx_port}/health", timeout=5) as r:
            assert json.loads(r.read())["status"] == "pass"

        dotenv = _cli(env, "stack", "env")
        assert dotenv.returncode == 0, dotenv.stderr
        values = dict(line.split("=", 1) for line in dotenv.stdout.splitlines())
        assert values["INFLUXDB_V2_URL"] == env["INFLUXDB_V2_URL"]
        assert values["MQTT_PORT"] == env["MQTT_PORT"]
        assert values["EDGEWATCH_INGEST_TOKEN"] != values["INFLUXDB_V2_TOKEN"]
    finally:
        down = _cli(env, "stack", "down")
    assert down.returncode == 0, down.stderr
    assert pids and not any(pid_alive(pid) for pid in pids)
    after = _cli(env, "stack", "status")
    assert after.returncode == 1
    assert (tmp_path / "state" / "influxdb" / "influxd.bolt").exists()  # data kept


def test_stack_up_names_the_setting_when_a_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {
            **os.environ,
            "EDGEWATCH_STATE_DIR": str(tmp_path / "state"),
            "MQTT_PORT": str(port),
            "MQTT_TLS_PORT": str(free_port()),
            "MQTT_TLS_PASSWORD_PORT": str(free_port()),
            "INFLUXDB_V2_URL": f"http://127.0.0.1:{free_port()}",
        }
        try:
            result = _cli(env, "stack", "up")
        finally:
            _cli(env, "stack", "down")
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use: set MQTT_PORT=" in result.stderr
    assert "Traceback" not in result.stderr


def _connects_with_certificate(values: dict[str, str]) -> bool:
    """Whether the stack's certificate listener lets this device in (CONNACK success)."""
    client = new_mqtt_client(
        client_id=f"cert-{secrets.token_hex(4)}",
        tls_ca=values["MQTT_TLS_CA"],
        tls_cert=values["MQTT_TLS_CERT"],
        tls_key=values["MQTT_TLS_KEY"],
    )
    outcome: queue.Queue[bool] = queue.Queue()
    client.on_connect = lambda _c, _u, _f, reason, _p: outcome.put(not reason.is_failure)
    try:
        client.connect("127.0.0.1", int(values["MQTT_TLS_PORT"]))
    except OSError:
        return False
    client.loop_start()
    try:
        return outcome.get(timeout=10)
    except queue.Empty:
        return False
    finally:
        client.disconnect()
        client.loop_stop()


def test_stack_certs_issue_then_revoke_locks_the_device_out(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "EDGEWATCH_STATE_DIR": str(tmp_path / "state"),
        "MQTT_PORT": str(free_port()),
        "MQTT_TLS_PORT": str(free_port()),
        "MQTT_TLS_PASSWORD_PORT": str(free_port()),
        "INFLUXDB_V2_URL": f"http://127.0.0.1:{free_port()}",
    }
    try:
        up = _cli(env, "stack", "up")
        assert up.returncode == 0, up.stderr
        issued = _cli(env, "stack", "certs", "issue", "plant-a", "cam-9", "--export")
        assert issued.returncode == 0, issued.stderr
        values = dict(
            line.removeprefix("export ").split("=", 1) for line in issued.stdout.splitlines()
        )
        assert Path(values["MQTT_TLS_KEY"]).stat().st_mode & 0o077 == 0
        assert _connects_with_certificate(values)

        revoked = _cli(env, "stack", "certs", "revoke", "plant-a", "cam-9")
        assert revoked.returncode == 0, revoked.stderr
        assert "mosquitto restarted" in revoked.stderr
        assert not _connects_with_certificate(values)

        unknown = _cli(env, "stack", "certs", "revoke", "plant-a", "never-issued")
        assert unknown.returncode != 0
        assert "stack certs issue plant-a never-issued" in unknown.stderr
        assert "Traceback" not in unknown.stderr
    finally:
        down = _cli(env, "stack", "down")
    assert down.returncode == 0, down.stderr
