"""Random topics and payloads at the decoder: it is total, and its output is writable."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgewatch.contract import decode_message
from edgewatch.models import AlertEvent, Rejected, StatusEvent, Telemetry
from edgewatch.schema import dead_letter_line, message_lines

ROOT = "edgewatch"
RECEIVED_NS = 1_767_225_600_000_000_000

names = st.sampled_from(["site-1", "cam_01", "a", "A.b-c", "", "bad name", "x/y", "+", "é"])
kinds = st.sampled_from(["telemetry", "alert", "status", "other", ""])
topics = st.one_of(
    st.text(max_size=40),
    st.builds(lambda s, d, k: f"{ROOT}/{s}/{d}/{k}", names, names, kinds),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
keys = st.sampled_from(
    [
        "ts",
        "seq",
        "metrics",
        "batch",
        "type",
        "severity",
        "state",
        "message",
        "value",
        "interval_s",
        "lat",
        "lon",
        "reason",
        "model",
    ]
)
timestamps = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["2025-12-31T23:59:00Z", "2025-12-31T23:59:00.123456789+01:00", "1e9"]),
)
readings = st.fixed_dictionaries(
    {
        "metrics": st.dictionaries(
            st.from_regex(r"[a-zA-Z_][a-z0-9_]{0,3}", fullmatch=True), json_values, max_size=4
        )
    },
    optional={"ts": timestamps, "seq": json_values},
)
bodies = st.one_of(
    st.dictionaries(keys, json_values, max_size=6),
    readings,
    st.builds(lambda rs: {"batch": rs}, st.lists(readings, max_size=4)),
    st.fixed_dictionaries(
        {"type": st.text(max_size=8), "severity": json_values},
        optional={
            "state": json_values,
            "ts": timestamps,
            "message": st.text(),
            "value": json_values,
        },
    ),
    st.fixed_dictionaries(
        {"state": st.sampled_from(["online", "offline", "x"])},
        optional={
            "ts": timestamps,
            "lat": json_values,
            "interval_s": json_values,
            "reason": st.text(),
        },
    ),
)


def _payload(body: object) -> bytes:
    return json.dumps(body, allow_nan=True).encode()


payloads = st.one_of(st.binary(max_size=200), bodies.map(_payload))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=topics, payload=payloads, received_ns=st.integers(0, 2**62))
def test_decoder_gives_a_message_or_a_rejection_and_both_are_writable(
    topic: str, payload: bytes, received_ns: int
) -> None:
    result = decode_message(topic, payload, received_ns, ROOT)
    assert isinstance(result, Rejected | Telemetry | AlertEvent | StatusEvent)
    if isinstance(result, Rejected):
        line = dead_letter_line(result)
    else:
        line = "\n".join(message_lines(result))
    # Everything we hand InfluxDB is valid UTF-8 and one line per point.
    line.encode("utf-8")
    assert all(part for part in line.split("\n"))
