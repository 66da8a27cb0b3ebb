"""shared room: the one factory of paho-mqtt clients (Home Assistant's `MqttClientSetup`).

Every paho `Client` of every room is built here, so TLS (with an explicit minimum version),
credentials, the protocol version, the callback API and the client id are decided once.
Callers set their own callbacks, will and flow control on the client they get. Touches: nothing
until the caller connects.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from shared.mqtt_socket import BufferedClient

TLS_MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2  # the broker's listener says the same


def tls_context(
    ca_file: str | Path,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> ssl.SSLContext:
    """Verify the broker against `ca_file`, host name included; TLS 1.2 or newer. With
    `cert_file` (and its `key_file`), present that client certificate: the device's identity
    on the broker's certificate listener."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.minimum_version = TLS_MINIMUM_VERSION
    if cert_file is not None:
        if key_file is None:
            raise ValueError(
                f"a client certificate ({cert_file}) needs its key: set MQTT_TLS_KEY too"
            )
        context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    return context


def new_mqtt_client(
    *,
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    tls_ca: str | Path | None = None,
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
    manual_ack: bool = False,
    buffered_reads: bool = False,
) -> paho.Client:
    """A paho client (callback API 2) with credentials and TLS set when given; a client
    certificate (`tls_cert`, `tls_key`) needs the CA (`tls_ca`) too. `buffered_reads` reads
    the socket in large chunks (`shared.mqtt_socket`): for a client that receives a lot."""
    if tls_cert is not None and tls_ca is None:
        raise ValueError("a client certificate is used over TLS only: set MQTT_TLS_CA too")
    client_class = BufferedClient if buffered_reads else paho.Client
    client = client_class(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        manual_ack=manual_ack,
    )
    if username:
        client.username_pw_set(username, password)
    if tls_ca:
        client.tls_set_context(tls_context(tls_ca, tls_cert, tls_key))
    return client
