"""ingest room: the MQTT side. Wraps paho-mqtt 2.x; paho's types never leave this module.

Touches the broker only. What it does:

- connects with MQTT v5, a fixed client id, Clean Start off and a Session Expiry Interval, so
  the broker keeps our subscriptions and every unacknowledged QoS 1 message while we are away
  (an ingest restart, a network cut, a broker restart with persistence);
- subscribes in `on_connect` (QoS 1, retain handling "only for new subscriptions"), so a
  resumed session and a lost one both end up subscribed;
- reconnects forever with backoff (paho's own loop), one log line per attempt, including
  when the broker is down at start;
- converts each PUBLISH to `edgewatch.models.InboundMessage` and hands it on; it acknowledges
  (PUBACK) only when `ack()` is called, i.e. after the ingest journal stored it (`manual_ack`).

Backpressure. The broker may have at most Receive Maximum unacknowledged messages in flight to
us (MQTT v5 flow control), and every message we hold (queued, in a batch, being written) is
unacknowledged. Receive Maximum is therefore set to the queue's capacity (capped at 65535,
the protocol's limit): the queue cannot overflow, and when the journal is full (InfluxDB down
for long) the broker simply stops sending and keeps the rest in our session. The hand-off is a
blocking `put` only as a safety net for a broker that ignores Receive Maximum: it then stalls
paho's network loop, which is still bounded memory and still loses nothing.

Ack tokens. Packet ids are reused by the broker once acknowledged, and after a reconnect the
broker re-sends unacknowledged messages under their ids. An ack token is the packet id plus the
connection generation it came on; an ack for an older connection is not sent (the broker
re-delivers that message, we store it again as the same point and acknowledge the copy), so a
stale PUBACK can never acknowledge a newer message that reused the id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edgewatch.models import InboundMessage
from shared.mqtt_client import new_mqtt_client

RECEIVE_MAXIMUM_LIMIT = 65535
RECONNECT_MIN_DELAY_SECONDS = 1
RECONNECT_MAX_DELAY_SECONDS = 30
_MID_BITS = 16
_MID_MASK = (1 << _MID_BITS) - 1

Handoff = Callable[[InboundMessage], None]
Clock = Callable[[], int]


def subscription_topics(root: str, share_group: str | None) -> list[str]:
    """The topic filters the ingest subscribes to; `$share/<group>/...` to scale out.

    The whole root, not just the three kinds: a message on any other topic under the root is
    then seen, rejected and dead-lettered as the contract says, instead of silently ignored.
    """
    filters = [f"{root}/#"]
    if share_group:
        return [f"$share/{share_group}/{topic}" for topic in filters]
    return filters


def make_ack_token(generation: int, mid: int) -> int:
    return (generation << _MID_BITS) | (mid & _MID_MASK)


def split_ack_token(token: int) -> tuple[int, int]:
    """(connection generation, packet id) of an ack token."""
    return token >> _MID_BITS, token & _MID_MASK


def _content_type(msg: paho.MQTTMessage) -> str | None:
    """The MQTT v5 content type of a message (None for MQTT 3.1.1 or when not set)."""
    value = getattr(msg.properties, "ContentType", None) if msg.properties else None
    return value if isinstance(value, str) else None


class MonotonicNs:
    """A receipt clock in ns that never repeats: two messages never share a receipt time
    (it is the timestamp of dead letters and of readings without `ts`)."""

    def __init__(self, clock: Clock = time.time_ns) -> None:
        self._clock = clock
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self._last = max(self._clock(), self._last + 1)
            return self._last


class MqttSource:
    """The broker connection: receive, hand off, acknowledge on request."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        root: str,
        handoff: Handoff,
        clock: Clock,
        share_group: str | None = None,
        session_expiry_seconds: int = 86400,
        keepalive_seconds: int = 30,
        receive_maximum: int = RECEIVE_MAXIMUM_LIMIT,
        username: str | None = None,
        password: str | None = None,
        tls_ca: str | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._client_id = client_id
        self._topics = subscription_topics(root, share_group)
        self._handoff = handoff
        self._clock = clock
        self._session_expiry = session_expiry_seconds
        self._keepalive = keepalive_seconds
        self._receive_maximum = max(1, min(receive_maximum, RECEIVE_MAXIMUM_LIMIT))
        self._log = logger or logging.getLogger(__name__)
        self._lock = threading.Lock()
        self._generation = 0
        self._connected = False
        self._accepting = True
        self._connect_attempts = 0
        self._ever_connected = False
        # Set once the broker granted our subscriptions (tests and readiness checks wait on it).
        self.subscribed = threading.Event()

        client = new_mqtt_client(
            client_id=client_id,
            username=username,
            password=password,
            tls_ca=tls_ca,
            manual_ack=True,
            # A backlog arrives as a stream of small packets: read it in large chunks.
            buffered_reads=True,
        )
        client.reconnect_delay_set(RECONNECT_MIN_DELAY_SECONDS, RECONNECT_MAX_DELAY_SECONDS)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client

    @property
    def topics(self) -> list[str]:
        return list(self._topics)

    @property
    def receive_maximum(self) -> int:
        return self._receive_maximum

    def start(self) -> None:
        """Connect in the background; paho's thread retries until the broker answers."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._session_expiry
        props.ReceiveMaximum = self._receive_maximum
        self._log.info(
            "mqtt connecting to %s:%d as %s (session expiry %d s, receive maximum %d, topics %s)",
            self._host,
            self._port,
            self._client_id,
            self._session_expiry,
            self._receive_maximum,
            ", ".join(self._topics),
        )
        self._client.connect_async(
            self._host,
            self._port,
            keepalive=self._keepalive,
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()

    def stop_taking(self) -> None:
        """From now on, incoming messages are left unacknowledged for the broker to keep."""
        with self._lock:
            self._accepting = False

    def ack(self, token: int) -> bool:
        """Acknowledge one message (PUBACK). False when its connection is gone (the broker
        will deliver it again) or the client could not queue the packet."""
        generation, mid = split_ack_token(token)
        with self._lock:
            if not self._connected or generation != self._generation:
                return False
            rc = self._client.ack(mid, 1)
        return bool(rc == MQTTErrorCode.MQTT_ERR_SUCCESS)

    def stop(self) -> None:
        """Disconnect after the queued PUBACKs are sent, and stop paho's thread."""
        with self._lock:
            self._accepting = False
            self._connected = False
        self._client.disconnect()
        self._client.loop_stop()
        self._log.info("mqtt disconnected from %s:%d", self._host, self._port)

    # ------------------------------------------------------------------ paho callbacks

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._connect_attempts += 1
            self._log.error(
                "mqtt broker %s:%d refused the connection of %s: %s (attempt %d); retrying",
                self._host,
                self._port,
                self._client_id,
                reason_code,
                self._connect_attempts,
            )
            return
        with self._lock:
            self._generation += 1
            self._connected = True
        attempts, self._connect_attempts = self._connect_attempts, 0
        if self._ever_connected and not flags.session_present:
            self._log.warning(
                "mqtt broker %s:%d had no session for %s: messages sent while we were away "
                "were not kept for us (session expired or broker lost its store)",
                self._host,
                self._port,
                self._client_id,
            )
        self._log.info(
            "mqtt connected to %s:%d as %s (session present: %s, after %d failed attempts)",
            self._host,
            self._port,
            self._client_id,
            flags.session_present,
            attempts,
        )
        self._ever_connected = True
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        result, _mid = client.subscribe([(topic, options) for topic in self._topics])
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._log.error("mqtt subscribe failed to send: %s", result)

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        for topic, code in zip(self._topics, reason_codes, strict=False):
            if code.is_failure:
                self._log.error("mqtt subscription to %s refused: %s", topic, code)
            else:
                self._log.info("mqtt subscribed to %s (%s)", topic, code)
        self.subscribed.set()

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._connect_attempts += 1
        self._log.warning(
            "mqtt cannot reach broker %s:%d (attempt %d); retrying with backoff (%d to %d s)",
            self._host,
            self._port,
            self._connect_attempts,
            RECONNECT_MIN_DELAY_SECONDS,
            RECONNECT_MAX_DELAY_SECONDS,
        )

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            was_connected = self._connected
            self._connected = False
            accepting = self._accepting
        if accepting or was_connected:
            self._log.warning(
                "mqtt connection to %s:%d lost: %s; unacknowledged messages stay with the "
                "broker; reconnecting",
                self._host,
                self._port,
                reason_code,
            )

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        # Convert at the boundary; nothing of paho's travels further.
        with self._lock:
            if not self._accepting:
                return
            generation = self._generation
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            # Brokers should refuse such topics; if one passes, it is dead-lettered as text.
            topic = bytes(msg._topic).decode("utf-8", errors="replace")
        inbound = InboundMessage(
            topic=topic,
            payload=bytes(msg.payload),
            received_ns=self._clock(),
            # QoS 0 needs no ack: token 0 is never sent (mid 0 is not a valid packet id).
            ack_token=make_ack_token(generation, msg.mid) if msg.qos > 0 else 0,
            retained=bool(msg.retain),
            content_type=_content_type(msg),
        )
        self._handoff(inbound)
