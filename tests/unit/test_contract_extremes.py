"""Extreme values in every field of every kind: the decoder never raises, and whatever it
accepts becomes line protocol without error.

`test_contract_properties.py` throws random shapes at the decoder; this file throws
well-formed messages whose values sit at the edges: +-1e308, integers far past 64 bits,
-0.0, subnormals, times past 2262 and before 1970, long and odd Unicode text, deep nesting.
"""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgewatch.contract import MAX_TS_NS, REJECT_INTERNAL, decode_message
from edgewatch.models import AlertEvent, Rejected, StatusEvent, Telemetry
from edgewatch.schema import dead_letter_line, message_lines

ROOT = "edgewatch"
NOW_NS = 1_767_225_600_000_000_000
FLOAT_MAX = sys.float_info.max

extreme_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_subnormal=True, min_value=-1e-300, max_value=1e-300),
    st.sampled_from(
        [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, FLOAT_MAX, -FLOAT_MAX, 1e300]
    ),
)
extreme_ints = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**4000), max_value=2**4000),
    st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**63), -(2**64), 10**300, -(10**300)]),
)
odd_text = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec=None, categories=["Cs", "Cc", "Cf", "Zl", "Zp", "Co"])),
    st.text(min_size=200, max_size=3000),
    st.sampled_from(["\x00", "\u2028", "\ufeff", "\u202e", "\U0001f525", "\ud800", "\udfff"]),
)


class RawLiteral:
    """A number literal written into the payload as is (json.dumps cannot write 1e999)."""

    def __init__(self, text: str) -> None:
        self.text = text


def nested(depth: int) -> object:
    value: object = []
    for _ in range(depth):
        value = [value]
    return value


deep = st.sampled_from([nested(50), nested(400), {"a": nested(100)}])
# Extremes of every JSON type; numbers also as the literals JSON allows but Python reads as
# infinity (written by `_payload`, see RAW_LITERALS).
extreme_values = st.one_of(
    extreme_floats,
    extreme_ints,
    odd_text,
    st.booleans(),
    st.none(),
    deep,
    st.sampled_from(["1e999", "-1e999", "NaN", "Infinity"]).map(RawLiteral),
)
rfc3339_edges = st.builds(
    lambda y, mo, d, h, mi, s, frac, off: (
        f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}" + frac + off
    ),
    st.sampled_from([0, 1, 1969, 1970, 2025, 2262, 2263, 9999]),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.sampled_from(["", ".0", ".999999999", ".123"]),
    st.sampled_from(["Z", "z", "+00:00", "-23:59", "+23:59", "+99:99", "-00:60"]),
)
timestamps = st.one_of(extreme_values, rfc3339_edges)
metric_names = st.one_of(
    st.from_regex(r"[a-z][a-z0-9_]{0,63}", fullmatch=True),
    odd_text,
)


def _payload(body: object) -> bytes:
    marks: dict[str, str] = {}

    def default(value: object) -> object:
        if isinstance(value, RawLiteral):
            mark = f"@@raw{len(marks)}@@"
            marks[mark] = value.text
            return mark
        raise TypeError(type(value).__name__)

    text = json.dumps(body, default=default)
    for mark, literal in marks.items():
        text = text.replace(f'"{mark}"', literal)
    # Lone surrogates are written escaped (\ud800), as a device's JSON library would.
    return text.encode("utf-8")


readings = st.fixed_dictionaries(
    {"metrics": st.dictionaries(metric_names, extreme_values, min_size=1, max_size=4)},
    optional={"ts": timestamps, "seq": extreme_values},
)
telemetry_bodies = st.one_of(
    readings,
    st.builds(lambda rs: {"batch": rs}, st.lists(readings, min_size=1, max_size=4)),
)
alert_bodies = st.fixed_dictionaries(
    {
        "type": st.one_of(st.sampled_from(["overheat", "x"]), extreme_values),
        "severity": st.one_of(st.sampled_from(["critical", "info"]), extreme_values),
    },
    optional={
        "ts": timestamps,
        "state": st.one_of(st.sampled_from(["raised", "cleared"]), extreme_values),
        "message": st.one_of(odd_text, extreme_values),
        "value": extreme_values,
    },
)
status_bodies = st.fixed_dictionaries(
    {"state": st.one_of(st.sampled_from(["online", "offline"]), extreme_values)},
    optional={
        "ts": timestamps,
        "interval_s": extreme_values,
        "lat": extreme_values,
        "lon": extreme_values,
        "model": st.one_of(odd_text, extreme_values),
        "model_version": odd_text,
        "firmware": odd_text,
        "reason": st.one_of(odd_text, extreme_values),
    },
)
messages = st.one_of(
    telemetry_bodies.map(lambda b: ("telemetry", b)),
    alert_bodies.map(lambda b: ("alert", b)),
    status_bodies.map(lambda b: ("status", b)),
)


def _check(topic: str, payload: bytes, received_ns: int) -> None:
    result = decode_message(topic, payload, received_ns, ROOT)
    if isinstance(result, Rejected):
        # The safety net is for the unforeseen; no drawn value may need it.
        assert result.code != REJECT_INTERNAL, result.reason
        dead_letter_line(result).encode("utf-8")
        return
    assert isinstance(result, Telemetry | AlertEvent | StatusEvent)
    lines = message_lines(result)
    for text in lines:
        text.encode("utf-8")
        assert 0 <= int(text.rsplit(" ", 1)[1]) <= MAX_TS_NS


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    message=messages,
    received_ns=st.one_of(st.just(NOW_NS), st.integers(0, MAX_TS_NS)),
)
def test_extreme_values_are_decoded_or_rejected_and_accepted_ones_are_writable(
    message: tuple[str, dict[str, object]], received_ns: int
) -> None:
    kind, body = message
    _check(f"{ROOT}/site-1/cam-01/{kind}", _payload(body), received_ns)


@pytest.mark.parametrize("kind", ["telemetry", "alert", "status"])
@pytest.mark.parametrize(
    "ts", ["1e300", "-1e300", "1.7976931348623157e308", "1e999", str(2**200), "9" * 4000]
)
def test_huge_ts_is_rejected_on_every_kind(kind: str, ts: str) -> None:
    body = {"telemetry": '"metrics": {"a": 1}', "alert": '"type": "x", "severity": "info"'}
    rest = body.get(kind, '"state": "online"')
    payload = f'{{"ts": {ts}, {rest}}}'.encode()
    result = decode_message(f"{ROOT}/s/d/{kind}", payload, NOW_NS, ROOT)
    assert isinstance(result, Rejected)
    assert result.code in ("clock_skew", "schema")
    assert len(result.reason) < 200


def test_an_unforeseen_exception_becomes_an_internal_rejection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object) -> object:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("edgewatch.contract.parse_alert", broken)
    result = decode_message(f"{ROOT}/s/d/alert", b'{"type": "x"}', NOW_NS, ROOT)
    assert isinstance(result, Rejected)
    assert result.code == REJECT_INTERNAL
    assert result.reason == "decoding failed: ZeroDivisionError: division by zero"
    assert result.payload_excerpt == '{"type": "x"}'
