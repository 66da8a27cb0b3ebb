"""The exact line protocol of every measurement (docs/architecture.md)."""

from __future__ import annotations

import pytest

from edgewatch.models import AlertEvent, Reading, Rejected, StatusEvent, Telemetry
from edgewatch.schema import (
    dead_letter_line,
    device_action_line,
    format_field,
    ingest_stats_line,
    line,
    message_lines,
    rollup_markers,
    state_lines,
)


def test_tags_are_sorted_and_escaped() -> None:
    assert line("m", {"b": "x y", "a": "p,q=r"}, {"f": 1.0}, 5) == r"m,a=p\,q\=r,b=x\ y f=1.0 5"


def test_empty_tags_and_none_fields_are_dropped() -> None:
    assert line("m", {"a": ""}, {"f": 1.0, "g": None}, 5) == "m f=1.0 5"


def test_a_point_without_fields_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one field"):
        line("m", {}, {"g": None}, 5)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (3, "3i"),
        (3.0, "3.0"),
        (1e16, "1e+16"),
        ('a"b\\', r'"a\"b\\"'),
    ],
)
def test_field_values(value: float | int | bool | str, text: str) -> None:
    assert format_field(value) == text


def test_non_finite_floats_are_refused() -> None:
    with pytest.raises(ValueError):
        format_field(float("nan"))


def test_the_telemetry_lines_are_the_bytes_line_writes() -> None:
    # telemetry_lines, state_lines and rollup_markers format a device's lines directly (the
    # per-reading hot path); they must write exactly what the general `line` writes.
    site, device, received = "plant a,1", "cam=2 x", 3_600_000_000_000 * 5 + 7
    readings = (
        Reading(ts_ns=60_000_000_000, metrics={"x": 1, "ok": False, "big": 1e16}, seq=0),
        Reading(ts_ns=90_000_000_000, metrics={"y": -0.5, "ok": True}),
    )
    message = Telemetry(site=site, device=device, readings=readings)
    tags = {"site": site, "device": device}
    assert message_lines(message) == [
        line("telemetry", tags, {"x": 1.0, "ok": False, "big": 1e16}, 60_000_000_000),
        line("telemetry_seq", tags, {"seq": 0}, 60_000_000_000),
        line("telemetry", tags, {"y": -0.5, "ok": True}, 90_000_000_000),
    ]
    assert state_lines(message, received, writer="ingest 1") == [
        line(
            "device_last_seen",
            tags,
            {"received_ns": received, "reading_ns": 90_000_000_000},
            3_600_000_000_000 * 5,
        ),
        line(
            "device_shadow",
            {**tags, "writer": "ingest 1"},
            {"seen_received_ns": received, "seen_reading_ns": 90_000_000_000},
            0,
        ),
    ]
    assert [text for _due, text in rollup_markers(message, received)] == [
        line("rollup_dirty", tags, {"received_ns": received}, 0)
    ]


def test_telemetry_with_seq_gives_its_lines_at_the_reading_time() -> None:
    message = Telemetry(
        site="s", device="d", readings=(Reading(ts_ns=7, metrics={"x": 1.0, "ok": True}, seq=4),)
    )
    assert message_lines(message) == [
        "telemetry,device=d,site=s x=1.0,ok=true 7",
        "telemetry_seq,device=d,site=s seq=4i 7",
    ]


def test_a_batch_is_seen_at_its_newest_reading_whatever_the_order() -> None:
    message = Telemetry(
        site="s",
        device="d",
        readings=(Reading(ts_ns=9, metrics={"x": 1.0}), Reading(ts_ns=5, metrics={"x": 2.0})),
    )
    assert "seen_reading_ns=9i" in state_lines(message, 20, writer="i1")[-1]


def test_alert_and_status_lines() -> None:
    alert = AlertEvent(site="s", device="d", ts_ns=9, type="hot", severity="major", value=2.0)
    assert message_lines(alert) == [
        "alert_event,device=d,site=s,type=hot "
        'severity="major",state="raised",message="",value=2.0 9'
    ]
    status = StatusEvent(site="s", device="d", ts_ns=9, state="online", interval_s=10.0)
    assert message_lines(status) == [
        'device_status,device=d,site=s state="online",interval_s=10.0 9'
    ]


def test_dead_letter_keeps_topic_reason_and_an_escaped_excerpt() -> None:
    rejected = Rejected(
        topic="t/x", code="json", reason="bad", payload_excerpt='{"a":\n1}', received_ns=3
    )
    assert dead_letter_line(rejected) == (
        'dead_letter,code=json topic="t/x",reason="bad",payload="{\\"a\\":\\n1}" 3'
    )


def test_ingest_stats_keeps_int_and_float_types() -> None:
    assert ingest_stats_line("i-1", {"received": 3, "lag_ms": 1.5}, 4) == (
        "ingest_stats,instance=i-1 received=3i,lag_ms=1.5 4"
    )


HOUR_NS = 3600 * 1_000_000_000
RECEIVED = 1_767_225_600_000_000_000 + 1234 * 1_000_000_000 + 5


def test_state_lines_telemetry_is_a_last_seen_point_per_hour_of_receipt() -> None:
    message = Telemetry(
        site="s",
        device="d",
        readings=(Reading(ts_ns=7, metrics={"x": 1.0}), Reading(ts_ns=9, metrics={"x": 2.0})),
    )
    hour = RECEIVED - RECEIVED % HOUR_NS
    assert state_lines(message, RECEIVED, writer="i1") == [
        f"device_last_seen,device=d,site=s received_ns={RECEIVED}i,reading_ns=9i {hour}",
        f"device_shadow,device=d,site=s,writer=i1 seen_received_ns={RECEIVED}i,"
        "seen_reading_ns=9i 0",
    ]
    # A later message in the same hour overwrites the same point (same series, same time).
    later = state_lines(message, RECEIVED + 60 * 1_000_000_000, writer="i1")[0]
    assert later.endswith(f" {hour}")


def test_state_lines_status_is_stamped_with_its_receipt_and_keeps_its_own_time() -> None:
    will = StatusEvent(site="s", device="d", ts_ns=RECEIVED, state="offline", reason="lwt")
    assert state_lines(will, RECEIVED, writer="i1") == [
        f'device_status,device=d,site=s state="offline",reason="lwt",ts_ns={RECEIVED}i {RECEIVED}',
        # The shadow: a will sets the state group only, the birth's description stays.
        'device_shadow,device=d,site=s,writer=i1 state="offline",reason="lwt",'
        f"status_ts_ns={RECEIVED}i,status_received_ns={RECEIVED}i 0",
    ]
    birth = StatusEvent(
        site="s", device="d", ts_ns=5, state="online", interval_s=300.0, model="yolo"
    )
    assert state_lines(birth, RECEIVED, writer="i1") == [
        "device_status,device=d,site=s "
        f'state="online",interval_s=300.0,model="yolo",ts_ns=5i {RECEIVED}',
        # No reason: written empty, so an older will's reason cannot explain this state.
        'device_shadow,device=d,site=s,writer=i1 state="online",reason="",status_ts_ns=5i,'
        f'status_received_ns={RECEIVED}i,interval_s=300.0,model="yolo",'
        f"described_received_ns={RECEIVED}i 0",
    ]


def test_state_lines_alert_keeps_its_own_time_and_adds_the_receipt() -> None:
    alert = AlertEvent(site="s", device="d", ts_ns=5, type="overheat", severity="major")
    assert state_lines(alert, RECEIVED, writer="i1") == [
        "alert_event,device=d,site=s,type=overheat "
        f'severity="major",state="raised",message="",received_ns={RECEIVED}i 5'
    ]


def test_device_action_line() -> None:
    assert (
        device_action_line(site="s", device="d", action="retire", user="ana", note="gone", ts_ns=5)
        == 'device_action,device=d,site=s action="retire",user="ana",note="gone" 5'
    )


MINUTE_NS = 60 * 1_000_000_000


def _replay(*ts_ns: int) -> Telemetry:
    return Telemetry(
        site="s", device="d", readings=tuple(Reading(ts_ns=t, metrics={"x": 1.0}) for t in ts_ns)
    )


def test_a_reading_in_time_gets_no_rollup_marker() -> None:
    reading_ns = 10 * HOUR_NS + 30 * 1_000_000_000  # 10:00:30
    # Received 89.9 s later: its minute closed 59.9 s before, under the 60 s threshold.
    lines = message_lines(_replay(reading_ns), received_ns=reading_ns + 89_900_000_000)
    assert not any(line.startswith("rollup_dirty") for line in lines)


def test_a_late_replay_marks_each_hour_it_touches_once_last() -> None:
    start = 10 * HOUR_NS + 30 * MINUTE_NS
    readings = [start + i * MINUTE_NS for i in range(60)]  # 10:30 .. 11:29
    received = 14 * HOUR_NS
    lines = message_lines(_replay(*readings), received_ns=received)
    markers = [line for line in lines if line.startswith("rollup_dirty")]
    assert markers == [
        f"rollup_dirty,device=d,site=s received_ns={received}i {10 * HOUR_NS}",
        f"rollup_dirty,device=d,site=s received_ns={received}i {11 * HOUR_NS}",
    ]
    # After every data line, so a stored marker always has its readings stored.
    assert lines[-2:] == markers


def test_the_late_threshold_is_sixty_seconds_after_the_minute_closed() -> None:
    reading_ns = 10 * HOUR_NS + 5 * 1_000_000_000  # minute 10:00 closes at 10:01:00
    closes = 10 * HOUR_NS + MINUTE_NS
    just_in_time = message_lines(_replay(reading_ns), received_ns=closes + 59_999_999_999)
    late = message_lines(_replay(reading_ns), received_ns=closes + 60_000_000_000)
    assert not any(line.startswith("rollup_dirty") for line in just_in_time)
    assert (
        late[-1]
        == f"rollup_dirty,device=d,site=s received_ns={closes + 60_000_000_000}i 36000000000000"
    )


def test_without_a_receipt_time_there_is_no_marker() -> None:
    assert not any(line.startswith("rollup_dirty") for line in message_lines(_replay(5)))
