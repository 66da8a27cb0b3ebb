"""bench room: the load generator, a paho-mqtt 2.x QoS 1 publisher run as its own process.

Its own process so that it never shares an interpreter lock with what measures it. Two modes:
`--file` publishes pre-generated messages as fast as the broker acknowledges them (a large
in-flight window, a bounded backlog); `--rate` publishes fresh readings stamped with their
publish time at a fixed rate, with a probe device among them that the latency poller tracks.
Prints one JSON object with the times it saw on stdout; progress on stderr. Touches: the broker.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from paho.mqtt.enums import MQTTProtocolVersion

from bench.workload import (
    LATENCY_SITE,
    device_name,
    read_messages,
    reading,
    telemetry_topic,
)
from edgewatch.encode import encode_payload
from shared.mqtt_client import new_mqtt_client

CONNECT_TIMEOUT_SECONDS = 10.0
ACK_TIMEOUT_SECONDS = 120.0
PROGRESS_INTERVAL_SECONDS = 5.0
PROBE_DEVICE = "probe-0"
PROBES_PER_SECOND = 20


class Publisher:
    """QoS 1 publishing with at most `window` messages not yet acknowledged by the broker."""

    def __init__(self, *, host: str, port: int, client_id: str, max_inflight: int) -> None:
        self._client = new_mqtt_client(client_id=client_id, protocol=MQTTProtocolVersion.MQTTv311)
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(0)
        self._client.on_publish = self._on_publish
        self._client.on_connect = self._on_connect
        self._window = max_inflight * 2
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self.published = 0
        self.acked = 0
        self._host, self._port = host, port

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            self._connected.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._cond:
            self.acked += 1
            if self.published - self.acked < self._window // 2 or self.acked == self.published:
                self._cond.notify_all()

    def connect(self) -> None:
        self._client.connect(self._host, self._port, keepalive=60)
        self._client.loop_start()
        if not self._connected.wait(CONNECT_TIMEOUT_SECONDS):
            raise RuntimeError(f"publisher could not connect to {self._host}:{self._port}")

    def publish(self, topic: str, payload: bytes) -> None:
        with self._cond:
            while self.published - self.acked >= self._window:
                self._cond.wait(1.0)
            self.published += 1
        self._client.publish(topic, payload, qos=1)

    def wait_all_acked(self) -> None:
        deadline = time.monotonic() + ACK_TIMEOUT_SECONDS
        with self._cond:
            while self.acked < self.published:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"broker acknowledged {self.acked} of {self.published} messages"
                    )
                self._cond.wait(1.0)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] publisher: {message}", file=sys.stderr, flush=True)


def _wait_for_acks(pub: Publisher, *, first: float, probes: int) -> dict[str, float | int]:
    """Wait until the broker acknowledged every message; the run's wall-clock marks."""
    last = time.time()
    pub.wait_all_acked()
    return {
        "published": pub.published,
        "first_publish": first,
        "last_publish": last,
        "all_acked": time.time(),
        "probes": probes,
    }


def publish_file(pub: Publisher, path: Path) -> dict[str, float | int]:
    messages = read_messages(path)
    total = len(messages)
    first = time.time()
    next_report = time.monotonic() + PROGRESS_INTERVAL_SECONDS
    for topic, payload in messages:
        pub.publish(topic, payload)
        if time.monotonic() >= next_report:
            rate = pub.published / (time.time() - first)
            _progress(f"published {pub.published}/{total} ({rate:,.0f} msg/s)")
            next_report += PROGRESS_INTERVAL_SECONDS
    return _wait_for_acks(pub, first=first, probes=0)


def rate_stream(*, root: str, devices: int, rate: float) -> Iterator[tuple[str, bool]]:
    """Topics in publish order: round-robin devices, a probe PROBES_PER_SECOND times a second."""
    probe_every = max(1, round(rate / PROBES_PER_SECOND))
    index = 0
    while True:
        if index % probe_every == 0:
            yield telemetry_topic(root, LATENCY_SITE, PROBE_DEVICE), True
        else:
            site, device = device_name(index % devices)
            yield telemetry_topic(root, site, device), False
        index += 1


def publish_rate(
    pub: Publisher, *, root: str, devices: int, rate: float, seconds: float, seed: int
) -> dict[str, float | int]:
    rng = random.Random(seed)
    total = int(rate * seconds)
    stream = rate_stream(root=root, devices=devices, rate=rate)
    probes = 0
    first = time.time()
    start = time.monotonic()
    next_report = start + PROGRESS_INTERVAL_SECONDS
    while pub.published < total:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        while pub.published < due:
            topic, is_probe = next(stream)
            # Stamped with the publish time: the stored `_time` of a probe is when it left.
            body = reading(rng, round(time.time(), 6), pub.published)
            pub.publish(topic, encode_payload(body))
            probes += is_probe
        if time.monotonic() >= next_report:
            _progress(f"published {pub.published}/{total} at {rate:,.0f} msg/s")
            next_report += PROGRESS_INTERVAL_SECONDS
        time.sleep(0.002)
    return _wait_for_acks(pub, first=first, probes=probes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.publisher")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", default="edgewatch-bench-publisher")
    parser.add_argument("--max-inflight", type=int, default=1000)
    parser.add_argument("--file", type=Path)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--root", default="edgewatch")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    if (args.file is None) == (args.rate is None):
        parser.error("give exactly one of --file and --rate")
    pub = Publisher(
        host=args.host, port=args.port, client_id=args.client_id, max_inflight=args.max_inflight
    )
    pub.connect()
    try:
        if args.file is not None:
            result = publish_file(pub, args.file)
        else:
            result = publish_rate(
                pub,
                root=args.root,
                devices=args.devices,
                rate=args.rate,
                seconds=args.seconds,
                seed=args.seed,
            )
    finally:
        pub.close()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
