"""Contract v1.1: gzip payloads announced by the MQTT v5 content type, and only those."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib

from edgewatch.contract import (
    CONTENT_TYPE_JSON_GZIP,
    MAX_PAYLOAD_BYTES,
    decode_message,
    is_gzip_content_type,
)
from edgewatch.encode import encode_payload, gzip_if_smaller, gzip_payload, reading_body
from edgewatch.models import Rejected, Telemetry

ROOT = "edgewatch"
NOW = 1_767_225_600_000_000_000
TOPIC = f"{ROOT}/site-1/cam-01/telemetry"
READING = b'{"ts": 1767225000, "metrics": {"x": 1}}'


def _decode(payload: bytes, content_type: str | None = CONTENT_TYPE_JSON_GZIP) -> object:
    return decode_message(TOPIC, payload, NOW, ROOT, content_type)


def _bomb(inflated_bytes: int) -> bytes:
    """A gzip stream of `inflated_bytes` zeros, built without holding them in memory."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"0" * (1024 * 1024)
    parts = [deflater.compress(b'{"metrics": {"x": 1}, "pad": "')]
    parts += [deflater.compress(chunk) for _ in range(inflated_bytes // len(chunk))]
    parts.append(deflater.compress(b'"}') + deflater.flush())
    return b"".join(parts)


def test_only_the_gzip_content_type_announces_gzip() -> None:
    assert is_gzip_content_type("application/json+gzip")
    assert is_gzip_content_type(" Application/JSON+GZIP ; charset=utf-8")
    for other in (None, "", "application/json", "application/gzip", "text/plain"):
        assert not is_gzip_content_type(other)


def test_a_gzip_payload_without_the_announcement_is_decoded_as_in_v1() -> None:
    result = _decode(gzip_payload(READING), content_type=None)
    assert isinstance(result, Rejected)
    assert result.code == "encoding"  # what v1 says of those bytes: not UTF-8
    plain = _decode(READING, content_type="application/json")
    assert isinstance(plain, Telemetry)


def test_concatenated_gzip_members_are_one_payload() -> None:
    whole = READING[:20] + READING[20:]
    payload = gzip_payload(READING[:20]) + gzip_payload(READING[20:])
    result = _decode(payload)
    assert isinstance(result, Telemetry), result
    assert result == _decode(whole, content_type=None)


def test_bytes_after_the_gzip_stream_are_corruption() -> None:
    result = _decode(gzip_payload(READING) + b"trailing")
    assert isinstance(result, Rejected)
    assert (result.code, result.reason) == (
        "compression",
        "gzip payload is corrupt: 8 bytes after the end of the gzip stream",
    )


def test_inflating_to_exactly_the_limit_is_accepted() -> None:
    body = b'{"metrics":{"x":1}}'
    result = _decode(gzip_payload(body + b" " * (MAX_PAYLOAD_BYTES - len(body))))
    assert isinstance(result, Telemetry), result


def test_a_gzip_bomb_is_a_dead_letter_without_inflating_it() -> None:
    bomb = _bomb(512 * 1024 * 1024)  # 512 MiB of zeros in about 500 KB ...
    assert len(bomb) > MAX_PAYLOAD_BYTES  # ... too large even compressed
    small_bomb = _bomb(200 * 1024 * 1024)  # 200 MiB in about 200 KB: under the limit
    assert len(small_bomb) <= MAX_PAYLOAD_BYTES
    tracemalloc.start()
    try:
        results = [_decode(bomb), _decode(small_bomb)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r.code for r in results if isinstance(r, Rejected)] == ["too_large", "too_large"]
    # At most the limit (and zlib's working buffers) was ever inflated, not 200 MiB.
    assert peak < 4 * MAX_PAYLOAD_BYTES


def test_a_rejected_gzip_payload_shows_its_json_in_the_dead_letter() -> None:
    result = _decode(gzip_payload(b'{"metrics": {"x": "hot"}}'))
    assert isinstance(result, Rejected)
    assert result.code == "schema"
    assert result.payload_excerpt == '{"metrics": {"x": "hot"}}'


def test_gzip_if_smaller_keeps_a_short_reading_plain_and_compresses_a_batch() -> None:
    single = encode_payload(reading_body({"cpu_temp_c": 61.5}, ts_ns=NOW, seq=1))
    assert gzip_if_smaller(single) == (single, None)
    batch = encode_payload(
        {"batch": [reading_body({"cpu_temp_c": 61.5 + i}, ts_ns=NOW + i, seq=i) for i in range(20)]}
    )
    sent, content_type = gzip_if_smaller(batch)
    assert content_type == CONTENT_TYPE_JSON_GZIP
    assert len(sent) < len(batch) / 2
    assert json.loads(gzip.decompress(sent)) == json.loads(batch)
