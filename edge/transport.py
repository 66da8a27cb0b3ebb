"""edge room: the MQTT link of one edge agent. The only module that imports paho.

The agent sees a `Transport` (publish at QoS 1, get a token back) and `LinkEvent`s
(connected, disconnected, acknowledged) delivered to a sink it passes in; paho's types never
leave this module. Callbacks run on paho's network thread and only hand an event to the sink
(the agent's queue), so they never block the network loop.

Session choices (MQTT v5): clean start on every connect, because the agent's own spool is the
durable session: what the broker has not acknowledged is still on disk. Within one process
paho keeps the QoS 1 messages it sent but saw no PUBACK for and resends them (DUP) after a
reconnect, with the same message id, so the agent's bookkeeping by token stays valid.

The last will is `{"state": "offline", "reason": "lwt"}`, retained, QoS 1, on the status
topic. `abort()` ends the connection so that the broker publishes it (DISCONNECT with reason
code 0x04, "disconnect with will message"), which is how the simulator crashes a device
without killing a process.

Touches: the broker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edgewatch.settings import Settings
from shared.mqtt_client import new_mqtt_client

RECONNECT_MIN_DELAY_SECONDS = 1
RECONNECT_MAX_DELAY_SECONDS = 10
QOS_AT_LEAST_ONCE = 1
DISCONNECT_WITH_WILL = 4


@dataclass(frozen=True, slots=True)
class Connected:
    """The broker accepted the connection (CONNACK success)."""


@dataclass(frozen=True, slots=True)
class Disconnected:
    reason: str


@dataclass(frozen=True, slots=True)
class Acked:
    """The broker acknowledged the publish with this token. `ok` is False for a PUBACK with a
    failure reason code (MQTT v5: not authorised, quota exceeded, payload too large...);
    `code` is that reason code (0 for success; edge/refusal.py says what each one means)."""

    token: int
    ok: bool
    reason: str = ""
    code: int = 0


LinkEvent = Connected | Disconnected | Acked
EventSink = Callable[[LinkEvent], None]


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """What an agent asks of its link: who it is, its last will, where events go.

    No will (`will_topic` None) is for links shared by many simulated devices.
    """

    client_id: str
    will_topic: str | None
    will_payload: bytes
    sink: EventSink


class Transport(Protocol):
    """A QoS 1 publisher with a last will. Implementations: `PahoTransport`, test fakes."""

    def start(self) -> None:
        """Begin connecting (and reconnecting) in the background."""

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, content_type: str | None = None
    ) -> int | None:
        """Queue one QoS 1 publish; the token comes back in an `Acked` event.

        `content_type` is sent as the MQTT v5 content type (None: none). None if the link
        refused to queue it (its own queue is full).
        """

    def wait_published(self, token: int, timeout_s: float) -> bool:
        """Block until the publish with this token was acknowledged, at most `timeout_s`."""

    def stop(self, *, timeout_s: float) -> None:
        """Disconnect cleanly (the broker discards the will) and stop the background loop."""

    def abort(self) -> None:
        """End the connection so that the broker publishes the last will (a crash)."""


TransportFactory = Callable[[LinkConfig], Transport]


class PahoTransport:
    """`Transport` over one paho-mqtt 2.x client, MQTT v5, network loop on its own thread."""

    def __init__(
        self,
        *,
        config: LinkConfig,
        host: str,
        port: int,
        keepalive_s: int = 30,
        username: str | None = None,
        password: str | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        max_in_flight: int = 20,
        logger: logging.Logger | None = None,
    ) -> None:
        self._config = config
        self._host = host
        self._port = port
        self._keepalive_s = keepalive_s
        self._log = logger or logging.getLogger(__name__)
        self._infos: dict[int, mqtt.MQTTMessageInfo] = {}
        self._lock = threading.Lock()
        client = new_mqtt_client(
            client_id=config.client_id,
            username=username,
            password=password,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
        )
        if config.will_topic is not None:
            client.will_set(
                config.will_topic, config.will_payload, qos=QOS_AT_LEAST_ONCE, retain=True
            )
        client.reconnect_delay_set(RECONNECT_MIN_DELAY_SECONDS, RECONNECT_MAX_DELAY_SECONDS)
        client.max_inflight_messages_set(max_in_flight)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client

    # paho callbacks: convert and hand off, nothing else.
    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            self._log.warning(
                "mqtt %s refused by %s:%d: %s",
                self._config.client_id,
                self._host,
                self._port,
                reason_code,
            )
            return
        self._config.sink(Connected())

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        self._config.sink(Disconnected(reason=str(reason_code)))

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        with self._lock:
            self._infos.pop(mid, None)
        # MQTT 3.1.1 has no PUBACK reason codes: paho reports success (0) for every PUBACK.
        code = int(getattr(reason_code, "value", reason_code))
        self._config.sink(
            Acked(token=mid, ok=not reason_code.is_failure, reason=str(reason_code), code=code)
        )

    def start(self) -> None:
        self._client.connect_async(
            self._host, self._port, keepalive=self._keepalive_s, clean_start=True
        )
        self._client.loop_start()

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, content_type: str | None = None
    ) -> int | None:
        properties = None
        if content_type is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ContentType = content_type
        info = self._client.publish(
            topic, payload, qos=QOS_AT_LEAST_ONCE, retain=retain, properties=properties
        )
        # NO_CONN still means queued: paho sends QoS 1 messages once it is connected again.
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._log.warning(
                "mqtt publish on %s not queued: %s", topic, mqtt.error_string(info.rc)
            )
            return None
        with self._lock:
            if not info.is_published():
                self._infos[info.mid] = info
        return int(info.mid)

    def wait_published(self, token: int, timeout_s: float) -> bool:
        with self._lock:
            info = self._infos.get(token)
        if info is None:
            return True
        try:
            info.wait_for_publish(timeout=timeout_s)
        except (RuntimeError, ValueError):
            return False
        return bool(info.is_published())

    def stop(self, *, timeout_s: float) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def abort(self) -> None:
        self._client.disconnect(
            reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=DISCONNECT_WITH_WILL)
        )
        self._client.loop_stop()


def paho_factory(
    settings: Settings,
    *,
    max_in_flight: int = 20,
    logger: logging.Logger | None = None,
) -> TransportFactory:
    """A factory of `PahoTransport`s connecting to the broker named in the settings."""

    def make(config: LinkConfig) -> Transport:
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
        return PahoTransport(
            config=config,
            host=settings.mqtt_host,
            port=settings.mqtt_connect_port,
            keepalive_s=settings.mqtt_keepalive_seconds,
            username=settings.mqtt_username,
            password=password,
            tls_ca=str(settings.mqtt_tls_ca) if settings.mqtt_tls_ca else None,
            # With a certificate the device signs in by it (MQTT_TLS_PORT), not by password.
            tls_cert=str(settings.mqtt_tls_cert) if settings.mqtt_tls_cert else None,
            tls_key=str(settings.mqtt_tls_key) if settings.mqtt_tls_key else None,
            max_in_flight=max_in_flight,
            logger=logger,
        )

    return make
