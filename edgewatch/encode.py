"""The edge contract (v1), sending side: payloads from values. Pure: touches nothing.

The other half of `edgewatch.contract` (which decodes); `tests/unit/test_encode.py` keeps the
two honest with a round trip (encode, then decode, gives back the same values). Everything
that speaks the contract to the broker encodes here: the edge agent and its spool, the fleet
simulator and the benchmark workload.

Payloads are compact JSON, UTF-8, with `allow_nan=False`: a NaN or an infinity is a
programming error on the sending side (the contract refuses them), raised here instead of
being dead-lettered by the ingest. Times go out as RFC 3339 text in UTC, exact to the
nanosecond (a float of epoch seconds cannot carry nanoseconds); a reading can also carry its
time as epoch seconds (`epoch=True`), the contract's other form, for consumers that read only
that (the benchmark's Telegraf peer).

Compression (contract v1.1): `gzip_if_smaller` gives a payload gzip-compressed with the MQTT v5
content type that announces it, or the payload as it was when gzip would not make it smaller.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from edgewatch.contract import CONTENT_TYPE_JSON_GZIP
from edgewatch.models import DeviceInfo, MetricValue

NS_PER_SECOND = 1_000_000_000
LAST_WILL_BODY: Mapping[str, str] = {"state": "offline", "reason": "lwt"}
REASON_SHUTDOWN = "shutdown"
# `{"batch":[` and `]}` around the readings of a batch; one comma between two of them.
BATCH_OVERHEAD_BYTES = 12
# zlib's default: most of level 9's ratio on repetitive JSON at a fraction of its CPU, which
# matters on an edge box that spends its CPU on inference.
GZIP_LEVEL = 6


def format_ts(ts_ns: int) -> str:
    """RFC 3339 in UTC, exact to the nanosecond, without trailing zero digits."""
    seconds, nanos = divmod(ts_ns, NS_PER_SECOND)
    text = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        fraction = f"{nanos:09d}"
        while fraction.endswith("000"):
            fraction = fraction[:-3]
        text += "." + fraction
    return text + "Z"


def epoch_seconds(ts_ns: int) -> int | float:
    """Epoch seconds: an int for whole seconds, else the float nearest to the exact value
    (exact to the microsecond for times of this era; the decoder reads its shortest repr)."""
    seconds, nanos = divmod(ts_ns, NS_PER_SECOND)
    if not nanos:
        return seconds
    return float(Decimal(ts_ns) / NS_PER_SECOND)


def encode_text(body: Mapping[str, Any]) -> str:
    """Compact JSON text of one payload (what a spool stores and later sends as is)."""
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def encode_payload(body: Mapping[str, Any]) -> bytes:
    """Compact JSON bytes of one payload."""
    return encode_text(body).encode("utf-8")


def reading_body(
    metrics: Mapping[str, MetricValue],
    *,
    ts_ns: int | None = None,
    seq: int | None = None,
    epoch: bool = False,
) -> dict[str, Any]:
    """One telemetry reading; without `ts_ns` the ingest stamps the time of receipt.

    `epoch`: the time as epoch seconds instead of RFC 3339 text (see `epoch_seconds`).
    """
    body: dict[str, Any] = {}
    if ts_ns is not None:
        body["ts"] = epoch_seconds(ts_ns) if epoch else format_ts(ts_ns)
    if seq is not None:
        body["seq"] = seq
    body["metrics"] = dict(metrics)
    return body


def batch_payload(reading_texts: Iterable[str]) -> bytes:
    """A `{"batch": [...]}` spliced from readings already encoded with `encode_text`.

    Splicing instead of decoding and re-encoding up to 1000 readings; the result is the same
    compact JSON `encode_payload({"batch": [...]})` would give.
    """
    return ('{"batch":[' + ",".join(reading_texts) + "]}").encode("utf-8")


def alert_body(
    alert_type: str,
    severity: str,
    *,
    ts_ns: int | None,
    state: Literal["raised", "cleared"] | str = "raised",
    message: str = "",
    value: float | None = None,
) -> dict[str, Any]:
    """One alert event; an empty message and an absent value are left out."""
    body: dict[str, Any] = {}
    if ts_ns is not None:
        body["ts"] = format_ts(ts_ns)
    body.update(type=alert_type, severity=severity, state=state)
    if message:
        body["message"] = message
    if value is not None:
        body["value"] = value
    return body


def birth_body(info: DeviceInfo, *, ts_ns: int) -> dict[str, Any]:
    """The retained `online` status a device publishes on every connect."""
    body: dict[str, Any] = {"state": "online", "ts": format_ts(ts_ns)}
    for key in ("interval_s", "model", "model_version", "firmware", "lat", "lon"):
        value = getattr(info, key)
        if value is not None:
            body[key] = value
    if info.model_sha256 is not None:
        body["model_sha256"] = info.model_sha256
    if info.labels:
        body["labels"] = dict(info.labels)
    return body


def offline_body(*, ts_ns: int | None, reason: str = REASON_SHUTDOWN) -> dict[str, Any]:
    """An `offline` status (a clean stop says `shutdown`)."""
    body: dict[str, Any] = {"state": "offline", "reason": reason}
    if ts_ns is not None:
        body["ts"] = format_ts(ts_ns)
    return body


def last_will_payload() -> bytes:
    """The retained last will every device sets: `{"state": "offline", "reason": "lwt"}`.

    It carries no `ts`: the broker publishes it at an unknown later time.
    """
    return encode_payload(LAST_WILL_BODY)


def gzip_payload(payload: bytes, *, level: int = GZIP_LEVEL) -> bytes:
    """`payload` as one gzip member; mtime 0, so the same payload gives the same bytes."""
    return gzip.compress(payload, compresslevel=level, mtime=0)


def gzip_if_smaller(payload: bytes) -> tuple[bytes, str | None]:
    """(bytes to send, MQTT v5 content type): gzip announced as `application/json+gzip`, or
    the plain payload and no content type when gzip would not save a byte (a short single
    reading: gzip's 18 bytes of framing and the announcement cost more than they save)."""
    compressed = gzip_payload(payload)
    if len(compressed) + len(CONTENT_TYPE_JSON_GZIP) < len(payload):
        return compressed, CONTENT_TYPE_JSON_GZIP
    return payload, None
