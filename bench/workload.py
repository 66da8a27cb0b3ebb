"""bench room: the deterministic telemetry stream every scenario publishes.

Pure: the same arguments give the same messages, byte for byte. Each message is one reading of
`METRIC_NAMES` (nine numbers and a boolean, like an edge-AI camera box reports) from one of
`devices` devices spread over sites; each device's readings are one second apart and end an
hour before `now`, so every reading has its own series and time (a redelivery overwrites
itself, never adds to the count) and is well inside the raw bucket's retention. Payloads are
the contract's own encoding (`edgewatch.encode`), as an edge agent sends them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edgewatch.contract import decode_message
from edgewatch.encode import encode_payload, reading_body
from edgewatch.models import Rejected
from edgewatch.schema import message_lines

METRIC_NAMES: tuple[str, ...] = (
    "cpu_temp_c",
    "gpu_temp_c",
    "cpu_util_pct",
    "gpu_util_pct",
    "mem_used_mb",
    "inference_ms",
    "fps",
    "detections",
    "power_w",
    "camera_ok",
)
COUNT_FIELD = "cpu_temp_c"  # present in every reading: counting it counts readings
WARMUP_SITE = "warmup"
LATENCY_SITE = "latency"
SITES = 10
END_BEFORE_NOW_SECONDS = 3600
NS_PER_SECOND = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes


def device_name(index: int) -> tuple[str, str]:
    """(site, device) of device number `index`."""
    return f"site-{index % SITES:02d}", f"cam-{index:05d}"


def _ts_ns(ts: float | int) -> int:
    # Whole seconds exactly; a float to the microsecond, the finest the workload stamps.
    if isinstance(ts, int):
        return ts * NS_PER_SECOND
    return round(ts * 1_000_000) * 1_000


def reading(rng: random.Random, ts: float | int, seq: int) -> dict[str, object]:
    """One reading of all metrics at `ts` (epoch seconds), plausible values, floats rounded
    like a device would."""
    metrics: dict[str, float | bool] = {
        "cpu_temp_c": round(rng.uniform(40.0, 85.0), 2),
        "gpu_temp_c": round(rng.uniform(40.0, 90.0), 2),
        "cpu_util_pct": round(rng.uniform(5.0, 100.0), 1),
        "gpu_util_pct": round(rng.uniform(5.0, 100.0), 1),
        "mem_used_mb": round(rng.uniform(800.0, 7800.0), 1),
        "inference_ms": round(rng.lognormvariate(3.0, 0.3), 2),
        "fps": round(rng.uniform(10.0, 30.0), 1),
        "detections": float(rng.randint(0, 40)),
        "power_w": round(rng.uniform(5.0, 30.0), 2),
        "camera_ok": rng.random() > 0.01,
    }
    # Epoch seconds, the contract's other form: the Telegraf peer reads only that.
    return reading_body(metrics, ts_ns=_ts_ns(ts), seq=seq, epoch=True)


def telemetry_topic(root: str, site: str, device: str) -> str:
    return f"{root}/{site}/{device}/telemetry"


def generate(*, root: str, count: int, devices: int, now: int, seed: int = 7) -> Iterator[Message]:
    """`count` messages, round-robin over `devices` devices, one second apart per device."""
    rng = random.Random(seed)
    per_device = -(-count // devices)
    first_ts = now - END_BEFORE_NOW_SECONDS - per_device
    for index in range(count):
        device_index, step = index % devices, index // devices
        site, device = device_name(device_index)
        body = reading(rng, first_ts + step, step)
        yield Message(telemetry_topic(root, site, device), encode_payload(body))


def warmup_message(root: str, ts: float) -> Message:
    """A reading outside the measured sites: shows the consumer is subscribed and writing."""
    body = reading(random.Random(0), round(ts, 6), 0)
    return Message(telemetry_topic(root, WARMUP_SITE, "warmup-0"), encode_payload(body))


def write_messages(path: Path, messages: Iterator[Message]) -> int:
    """One `topic<TAB>payload` line per message (compact JSON has no tab or newline)."""
    written = 0
    with path.open("wb") as f:
        for message in messages:
            f.write(message.topic.encode() + b"\t" + message.payload + b"\n")
            written += 1
    return written


def read_messages(path: Path) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    with path.open("rb") as f:
        for raw in f:
            topic, payload = raw.rstrip(b"\n").split(b"\t", 1)
            out.append((topic.decode(), payload))
    return out


def line_protocol(path: Path, *, root: str, received_ns: int) -> list[str]:
    """The exact lines the ingest stores for the messages in `path` (for the DB ceiling)."""
    lines: list[str] = []
    for topic, payload in read_messages(path):
        decoded = decode_message(topic, payload, received_ns, root)
        if isinstance(decoded, Rejected):
            raise ValueError(f"bench workload message rejected: {decoded.reason}")
        lines.extend(message_lines(decoded))
    return lines
