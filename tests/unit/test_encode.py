"""Both sides of the contract: what edgewatch.encode writes, edgewatch.contract reads back
with the same values (a round trip, property-based), and the encoder's exact forms."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewatch.contract import (
    MAX_MESSAGE_CHARS,
    MAX_METRICS_PER_READING,
    MAX_TEXT_CHARS,
    decode_message,
)
from edgewatch.encode import (
    alert_body,
    batch_payload,
    birth_body,
    encode_payload,
    encode_text,
    format_ts,
    gzip_if_smaller,
    last_will_payload,
    offline_body,
    reading_body,
)
from edgewatch.models import SEVERITIES, AlertEvent, DeviceInfo, StatusEvent, Telemetry

ROOT = "edgewatch"
NS = 1_000_000_000
T0 = 1_767_268_800 * NS
RECEIVED_NS = 1_900_000_000 * NS  # after every drawn ts: none is clock skew

ts_values = st.integers(0, RECEIVED_NS)
names = st.from_regex(r"[a-z][a-z0-9_]{0,63}", fullmatch=True)
numbers = st.floats(allow_nan=False, allow_infinity=False)
metric_values = st.one_of(st.booleans(), numbers)
metrics = st.dictionaries(names, metric_values, min_size=1, max_size=MAX_METRICS_PER_READING)
seqs = st.one_of(st.none(), st.integers(0, 2**63 - 1))
texts = st.text(max_size=MAX_TEXT_CHARS)


def _topic(kind: str) -> str:
    return f"{ROOT}/site-1/cam-01/{kind}"


def _same_metrics(got: object, sent: dict[str, float | bool]) -> None:
    assert isinstance(got, dict)
    assert got.keys() == sent.keys()
    for name, value in sent.items():
        assert type(got[name]) is type(value) or not isinstance(value, bool)
        assert got[name] == value
        if isinstance(value, float):  # -0.0 stays -0.0
            assert math.copysign(1.0, got[name]) == math.copysign(1.0, value)


@settings(max_examples=300, deadline=None)
@given(values=metrics, ts_ns=st.one_of(st.none(), ts_values), seq=seqs)
def test_a_reading_round_trips(
    values: dict[str, float | bool], ts_ns: int | None, seq: int | None
) -> None:
    payload = encode_payload(reading_body(values, ts_ns=ts_ns, seq=seq))
    decoded = decode_message(_topic("telemetry"), payload, RECEIVED_NS, ROOT)
    assert isinstance(decoded, Telemetry), decoded
    (reading,) = decoded.readings
    assert reading.ts_ns == (RECEIVED_NS if ts_ns is None else ts_ns)
    assert reading.ts_given == (ts_ns is not None)
    assert reading.seq == seq
    _same_metrics(dict(reading.metrics), values)


@settings(max_examples=300, deadline=None)
@given(ts_us=st.integers(0, RECEIVED_NS // 1000))
def test_an_epoch_seconds_time_round_trips_to_the_microsecond(ts_us: int) -> None:
    ts_ns = ts_us * 1000
    payload = encode_payload(reading_body({"x": 1.0}, ts_ns=ts_ns, epoch=True))
    decoded = decode_message(_topic("telemetry"), payload, RECEIVED_NS, ROOT)
    assert isinstance(decoded, Telemetry), decoded
    assert decoded.readings[0].ts_ns == ts_ns


@settings(max_examples=100, deadline=None)
@given(
    readings=st.lists(
        st.tuples(st.dictionaries(names, metric_values, min_size=1, max_size=8), ts_values, seqs),
        min_size=1,
        max_size=50,
    )
)
def test_a_batch_round_trips(
    readings: list[tuple[dict[str, float | bool], int, int | None]],
) -> None:
    texts_ = [encode_text(reading_body(m, ts_ns=ts, seq=seq)) for m, ts, seq in readings]
    payload = batch_payload(texts_)
    bodies = [reading_body(m, ts_ns=ts, seq=seq) for m, ts, seq in readings]
    assert payload == encode_payload({"batch": bodies})  # the splice is the plain encoding
    # Plain, and as an edge agent with gzip sends it (compressed where that is smaller).
    for sent_payload, content_type in ((payload, None), gzip_if_smaller(payload)):
        decoded = decode_message(_topic("telemetry"), sent_payload, RECEIVED_NS, ROOT, content_type)
        assert isinstance(decoded, Telemetry), decoded
        assert [(r.ts_ns, r.seq) for r in decoded.readings] == [(ts, s) for _, ts, s in readings]
        for reading, (sent, _, _) in zip(decoded.readings, readings, strict=True):
            _same_metrics(dict(reading.metrics), sent)


@settings(max_examples=300, deadline=None)
@given(
    alert_type=names,
    severity=st.sampled_from(SEVERITIES),
    state=st.sampled_from(["raised", "cleared"]),
    message=st.text(max_size=MAX_MESSAGE_CHARS),
    value=st.one_of(st.none(), numbers),
    ts_ns=st.one_of(st.none(), ts_values),
)
def test_an_alert_round_trips(
    alert_type: str,
    severity: str,
    state: str,
    message: str,
    value: float | None,
    ts_ns: int | None,
) -> None:
    body = alert_body(alert_type, severity, ts_ns=ts_ns, state=state, message=message, value=value)
    decoded = decode_message(_topic("alert"), encode_payload(body), RECEIVED_NS, ROOT)
    assert isinstance(decoded, AlertEvent), decoded
    assert (decoded.type, decoded.severity, decoded.state, decoded.message) == (
        alert_type,
        severity,
        state,
        message,
    )
    assert decoded.value == value
    assert decoded.ts_ns == (RECEIVED_NS if ts_ns is None else ts_ns)


@settings(max_examples=300, deadline=None)
@given(
    info=st.builds(
        DeviceInfo,
        interval_s=st.one_of(st.none(), st.floats(0.001, 86400.0)),
        model=st.one_of(st.none(), texts),
        model_version=st.one_of(st.none(), texts),
        firmware=st.one_of(st.none(), texts),
        lat=st.one_of(st.none(), st.floats(-90.0, 90.0)),
        lon=st.one_of(st.none(), st.floats(-180.0, 180.0)),
        model_sha256=st.one_of(st.none(), st.from_regex(r"\A[0-9a-f]{64}\Z")),
        labels=st.dictionaries(
            st.from_regex(r"\A[a-z][a-z0-9_]{0,31}\Z"), st.text(max_size=64), max_size=16
        ).map(lambda labels: tuple(sorted(labels.items()))),
    ),
    ts_ns=ts_values,
)
def test_a_birth_round_trips(info: DeviceInfo, ts_ns: int) -> None:
    payload = encode_payload(birth_body(info, ts_ns=ts_ns))
    decoded = decode_message(_topic("status"), payload, RECEIVED_NS, ROOT)
    assert isinstance(decoded, StatusEvent), decoded
    assert decoded.state == "online" and decoded.ts_ns == ts_ns
    assert DeviceInfo.from_status(decoded) == info


@pytest.mark.parametrize("ts_ns", [None, T0])
def test_offline_and_last_will_round_trip(ts_ns: int | None) -> None:
    decoded = decode_message(
        _topic("status"), encode_payload(offline_body(ts_ns=ts_ns)), RECEIVED_NS, ROOT
    )
    assert isinstance(decoded, StatusEvent)
    assert (decoded.state, decoded.reason, decoded.ts_given) == (
        "offline",
        "shutdown",
        ts_ns is not None,
    )
    will = decode_message(_topic("status"), last_will_payload(), RECEIVED_NS, ROOT)
    assert isinstance(will, StatusEvent)
    assert (will.state, will.reason, will.ts_given) == ("offline", "lwt", False)
    assert last_will_payload() == b'{"state":"offline","reason":"lwt"}'


def test_format_ts_is_exact() -> None:
    assert format_ts(T0) == "2026-01-01T12:00:00Z"
    assert format_ts(T0 + 123_000_000) == "2026-01-01T12:00:00.123Z"
    assert format_ts(T0 + 1) == "2026-01-01T12:00:00.000000001Z"


def test_non_finite_numbers_are_refused_when_encoding() -> None:
    with pytest.raises(ValueError):
        encode_payload(reading_body({"x": math.nan}))
    with pytest.raises(ValueError):
        encode_payload(alert_body("x", "info", ts_ns=None, value=math.inf))
