"""Edge cases of the contract decoder beyond the golden files."""

from __future__ import annotations

import json

import pytest

from edgewatch.contract import (
    MAX_PAYLOAD_BYTES,
    REJECT_CODES,
    decode_message,
    parse_timestamp,
    payload_excerpt,
)
from edgewatch.models import AlertEvent, Rejected, StatusEvent, Telemetry

ROOT = "edgewatch"
NOW = 1_767_225_600_000_000_000
TOPIC = f"{ROOT}/site-1/cam-01/telemetry"


def _decode(body: object, topic: str = TOPIC) -> object:
    return decode_message(topic, json.dumps(body).encode(), NOW, ROOT)


def test_storage_is_a_rejection_code() -> None:
    assert "storage" in REJECT_CODES


def test_decoder_is_total_on_oversized_integers() -> None:
    result = decode_message(TOPIC, b'{"metrics":{"x":' + b"1" * 10_000 + b"}}", NOW, ROOT)
    assert isinstance(result, Rejected)
    assert result.code == "json"


@pytest.mark.parametrize(
    "payload",
    [
        "\ufeff{}".encode(),  # a byte order mark: json.loads' own check
        b'{"metrics": {"x": 1,}}',
        b"",
        b'{"a": 1} x',
        b'{"metrics": {"x": 1, "x": 2}}',
        b'{"metrics": {"x": NaN}}',
    ],
)
def test_json_errors_read_as_json_loads_gives_them(payload: bytes) -> None:
    # The decoder is built once (edgewatch.contract._JSON) instead of per call by json.loads;
    # what a sender is told must not change with it.
    result = decode_message(TOPIC, payload, NOW, ROOT)
    assert isinstance(result, Rejected)
    try:
        json.loads(payload.decode())
    except json.JSONDecodeError as exc:
        expected = f"payload is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        assert (result.code, result.reason) == ("json", expected)
    else:
        assert result.code in ("json", "schema")  # duplicates and NaN: the contract's own


def test_deep_nesting_is_rejected_not_raised() -> None:
    result = decode_message(TOPIC, b"[" * 100_000, NOW, ROOT)
    assert isinstance(result, Rejected)
    assert result.code == "json"


def test_payload_of_exactly_256_kib_is_not_too_large() -> None:
    body = b'{"metrics":{"x":1}}'
    result = decode_message(TOPIC, body + b" " * (MAX_PAYLOAD_BYTES - len(body)), NOW, ROOT)
    assert isinstance(result, Telemetry)


def test_epoch_float_keeps_its_decimal_digits() -> None:
    assert parse_timestamp(1700000000.123, "ts", NOW) == 1_700_000_000_123_000_000


def test_ts_exactly_300_s_ahead_is_accepted_and_one_ns_more_is_not() -> None:
    assert parse_timestamp(NOW / 1e9 + 300, "ts", NOW) == NOW + 300 * 10**9
    result = _decode({"ts": "2026-01-01T00:05:00.000000001Z", "metrics": {"x": 1}})
    assert isinstance(result, Rejected)
    assert result.code == "clock_skew"


def test_batch_readings_without_ts_do_not_share_a_timestamp() -> None:
    result = _decode({"batch": [{"metrics": {"x": i}} for i in range(5)]})
    assert isinstance(result, Telemetry)
    stamps = [r.ts_ns for r in result.readings]
    assert len(set(stamps)) == 5
    assert not any(r.ts_given for r in result.readings)


def test_seq_as_integral_float_is_accepted() -> None:
    result = _decode({"seq": 3.0, "metrics": {"x": 1}})
    assert isinstance(result, Telemetry)
    assert result.readings[0].seq == 3


def test_booleans_stay_booleans_and_numbers_become_floats() -> None:
    result = _decode({"metrics": {"ok": True, "n": 1}})
    assert isinstance(result, Telemetry)
    assert result.readings[0].metrics == {"ok": True, "n": 1.0}
    assert isinstance(result.readings[0].metrics["n"], float)


def test_alert_and_status_are_decoded_with_their_site_and_device() -> None:
    alert = _decode({"type": "overheat", "severity": "critical"}, f"{ROOT}/s/d/alert")
    assert isinstance(alert, AlertEvent)
    assert (alert.site, alert.device, alert.state) == ("s", "d", "raised")
    status = _decode({"state": "offline", "reason": "lwt"}, f"{ROOT}/s/d/status")
    assert isinstance(status, StatusEvent)
    assert status.ts_ns == NOW
    assert not status.ts_given


@pytest.mark.parametrize("root", ["edgewatch", "a/b"])
def test_root_with_levels(root: str) -> None:
    result = decode_message(f"{root}/s/d/telemetry", b'{"metrics":{"x":1}}', NOW, root)
    assert isinstance(result, Telemetry)


def test_payload_excerpt_is_bounded_and_never_fails() -> None:
    excerpt = payload_excerpt(b"\xff" * 5000)
    assert len(excerpt) <= 1025
    assert excerpt.endswith("…")
