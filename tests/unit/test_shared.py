"""The shared room: the private-file writer and the paho client factory (no network)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from edgewatch.settings import load_settings
from shared.mqtt_client import TLS_MINIMUM_VERSION, new_mqtt_client, tls_context
from shared.mqtt_socket import BufferedClient, BufferedSocket
from shared.private_file import write_private_file
from stack.security import create_certificates


def test_a_private_file_is_0600_and_replaces_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "token.json"
    write_private_file(path, "old")
    path.chmod(0o644)  # whatever mode the old file had, the new one is private
    write_private_file(path, b"new")
    assert path.read_text() == "new"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["token.json"]  # no temp file left


def test_a_failed_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    write_private_file(path, '{"complete": true}')
    with pytest.raises(TypeError):
        write_private_file(path, 42)  # type: ignore[arg-type]
    assert path.read_text() == '{"complete": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["users.json"]


def test_a_public_file_keeps_the_mode_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "ca.crt"
    write_private_file(path, "cert", mode=0o644)
    assert path.stat().st_mode & 0o777 == 0o644


def test_tls_verifies_the_broker_with_tls_1_2_at_least(tmp_path: Path) -> None:
    create_certificates(tmp_path)
    context = tls_context(tmp_path / "ca.crt")
    assert context.minimum_version == TLS_MINIMUM_VERSION == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_the_factory_sets_what_it_is_given(tmp_path: Path) -> None:
    create_certificates(tmp_path)
    client = new_mqtt_client(
        client_id="cam-01",
        username="device:site-1:cam-01",
        password="secret-pw",
        tls_ca=tmp_path / "ca.crt",
    )
    assert client._client_id == b"cam-01"
    assert client._username == b"device:site-1:cam-01"
    assert client._protocol == MQTTProtocolVersion.MQTTv5
    assert client._ssl_context is not None
    assert client._ssl_context.minimum_version == TLS_MINIMUM_VERSION
    plain = new_mqtt_client(client_id="bench", protocol=MQTTProtocolVersion.MQTTv311)
    assert plain._ssl_context is None and plain._username is None
    assert plain._protocol == MQTTProtocolVersion.MQTTv311


def test_a_client_certificate_needs_its_key_and_the_ca(tmp_path: Path) -> None:
    create_certificates(tmp_path)
    with pytest.raises(ValueError, match="MQTT_TLS_KEY"):
        tls_context(tmp_path / "ca.crt", tmp_path / "device.crt", None)
    with pytest.raises(ValueError, match="MQTT_TLS_CA"):
        new_mqtt_client(client_id="d", tls_cert=tmp_path / "device.crt")


def test_clients_connect_to_the_listener_that_matches_how_they_sign_in() -> None:
    assert load_settings(mqtt_port=1).mqtt_connect_port == 1
    with_ca = {"mqtt_tls_ca": Path("/ca"), "mqtt_tls_port": 2, "mqtt_tls_password_port": 3}
    assert load_settings(**with_ca).mqtt_connect_port == 3
    assert load_settings(**with_ca, mqtt_tls_cert=Path("/c")).mqtt_connect_port == 2


def test_buffered_reads_hand_paho_the_bytes_in_order_from_one_recv() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.setblocking(False)
        reader = BufferedSocket(right)
        with pytest.raises(BlockingIOError):
            reader.recv(1)  # nothing sent yet: paho sees the socket's own "try again"
        left.sendall(b"\x30\x05hello\x40\x02\x00\x01")
        assert reader.recv(1) == b"\x30"
        # The rest was read with the first byte: select() would not show it, pending() does.
        assert reader.buffered == reader.pending() == 10
        assert reader.recv(1) == b"\x05"
        assert reader.recv(5) == b"hello"
        assert reader.recv(100) == b"\x40\x02\x00\x01"  # never more than what was buffered
        assert reader.pending() == 0
        left.sendall(b"abc")
        assert reader.recv(100) == b"abc"  # a read that fits is passed through whole
        left.close()
        assert reader.recv(1) == b""  # end of stream, as paho expects it


def test_buffered_reads_write_straight_through() -> None:
    left, right = socket.socketpair()
    with left, right:
        writer = BufferedSocket(right)
        assert writer.send(b"\x40\x02\x00\x01") == 4
        assert left.recv(10) == b"\x40\x02\x00\x01"
        assert writer.fileno() == right.fileno()
        assert writer.getsockname() == right.getsockname()  # anything else is the socket's


def test_the_factory_gives_buffered_reads_on_request() -> None:
    # BufferedClient hooks paho's socket creation; an upgrade that renames it must fail here.
    assert callable(getattr(paho.Client, "_create_socket", None))
    assert isinstance(new_mqtt_client(client_id="ingest", buffered_reads=True), BufferedClient)
    assert type(new_mqtt_client(client_id="device")) is paho.Client
