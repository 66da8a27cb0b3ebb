"""bench room: what one MQTT message costs the ingest's process, part by part.

`python -m bench.client_cost [--messages N]` leaves N QoS 1 telemetry messages queued for a
persistent session on a fresh Mosquitto, then drains them twice with a paho-mqtt 2.x client
(MQTT v5, manual acknowledgement, as the ingest connects) and reports CPU microseconds per
message: receiving and acknowledging only, with paho's stock socket reads and with the
ingest's buffered ones (`shared.mqtt_socket`), then also decoding and validating each message
and formatting its line protocol (edgewatch's core), on the buffered reads as the ingest
runs. A backlog drain takes the publisher out of the measurement, which in the throughput
runs is the limit. Touches: its own Mosquitto on a free loopback port and a temp dir.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgewatch.contract import decode_message
from edgewatch.encode import encode_payload, reading_body
from edgewatch.models import Rejected
from edgewatch.schema import message_lines
from shared.mqtt_client import new_mqtt_client
from stack.processes import MosquittoProcess, free_port

ROOT = "bench"
TOPIC = f"{ROOT}/site-1/cam-01/telemetry"
DRAIN_TIMEOUT_SECONDS = 300.0


def _client(
    port: int, client_id: str, *, manual_ack: bool, buffered_reads: bool = False
) -> mqtt.Client:
    client = new_mqtt_client(
        client_id=client_id, manual_ack=manual_ack, buffered_reads=buffered_reads
    )
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 20000
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    return client


def _fill_backlog(port: int, count: int, payload: bytes) -> None:
    publisher = new_mqtt_client(client_id="bench-cost-pub")
    publisher.max_inflight_messages_set(1000)
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    infos = [publisher.publish(TOPIC, payload, qos=1) for _ in range(count)]
    for info in infos:
        info.wait_for_publish(30)
    publisher.disconnect()
    publisher.loop_stop()


def _drain(
    port: int, count: int, work: Callable[[mqtt.MQTTMessage], object], *, buffered_reads: bool
) -> dict[str, float]:
    received = 0
    done = threading.Event()

    def on_message(client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        nonlocal received
        work(message)
        client.ack(message.mid, message.qos)
        received += 1
        if received == count:
            done.set()

    cpu0, wall0 = time.process_time(), time.monotonic()
    subscriber = _client(port, "bench-cost-sub", manual_ack=True, buffered_reads=buffered_reads)
    subscriber.on_message = on_message
    subscriber.loop_start()
    finished = done.wait(DRAIN_TIMEOUT_SECONDS)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    subscriber.disconnect()
    subscriber.loop_stop()
    if not finished:
        raise RuntimeError(f"drained {received} of {count} messages in {wall:.0f} s")
    return {"cpu_us_per_msg": cpu / count * 1e6, "msg_per_s": count / wall}


def measure(count: int) -> dict[str, dict[str, float]]:
    workdir = Path(tempfile.mkdtemp(prefix="edgewatch-bench-cost-"))
    broker = MosquittoProcess(port=free_port(), data_dir=workdir, max_inflight_messages=0)
    broker.start()
    try:
        # Subscribe once so the broker keeps a session (and the backlog) for this client id.
        subscriber = _client(broker.port, "bench-cost-sub", manual_ack=True)
        subscriber.loop_start()
        subscriber.subscribe(f"{ROOT}/#", qos=1)[1]
        time.sleep(0.5)
        subscriber.disconnect()
        subscriber.loop_stop()
        metrics = {f"m{i}": 1.5 + i for i in range(10)}
        payload = encode_payload(reading_body(metrics, ts_ns=time.time_ns(), seq=1, epoch=True))

        def core(message: mqtt.MQTTMessage) -> object:
            decoded = decode_message(message.topic, bytes(message.payload), time.time_ns(), ROOT)
            if isinstance(decoded, Rejected):
                raise RuntimeError(f"the bench payload was rejected: {decoded.reason}")
            return message_lines(decoded)

        def receive_only(_message: mqtt.MQTTMessage) -> object:
            return None

        runs: list[tuple[str, Callable[[mqtt.MQTTMessage], object], bool]] = [
            ("paho receive + ack", receive_only, False),
            ("buffered reads", receive_only, True),
            ("+ decode + lines", core, True),
        ]
        results = {}
        for name, work, buffered in runs:
            _fill_backlog(broker.port, count, payload)
            results[name] = _drain(broker.port, count, work, buffered_reads=buffered)
        return results
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args()
    for name, figures in measure(args.messages).items():
        print(
            f"{name:<20} {figures['cpu_us_per_msg']:6.0f} µs CPU/msg  "
            f"{figures['msg_per_s']:8.0f} msg/s drained"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
