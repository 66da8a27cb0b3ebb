"""The device shadow: what `shadow_line` writes, folded as InfluxDB keeps it, read back by
`parse_shadow` as the history reader (`parse_snapshots`) would read the same messages."""

from __future__ import annotations

import re
from typing import Any

from edgewatch.models import Reading, StatusEvent, Telemetry
from edgewatch.rows import parse_shadow, rebuilt_shadow_lines
from edgewatch.schema import SHADOW_RETAINED_WRITER, shadow_line

S = 1_000_000_000
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,]+)')


def _store(writes: list[tuple[Telemetry | StatusEvent, int, str]]) -> list[dict[str, Any]]:
    """The shadow as InfluxDB holds it after `writes`, in write order."""
    return _fold(
        [shadow_line(message, received_ns, writer=w) for message, received_ns, w in writes]
    )


def _fold(lines: list[str]) -> list[dict[str, Any]]:
    """Shadow lines as InfluxDB keeps them: one point per device and writer at one time,
    each write overwriting the fields it carries."""
    points: dict[str, dict[str, Any]] = {}
    for text in lines:
        series, fields, ts = _split(text)
        assert ts == "0"
        tags = dict(part.split("=", 1) for part in series.split(",")[1:])
        row = points.setdefault(series, dict(tags))
        for name, value in FIELD.findall(fields):
            row[name] = _value(value)
    return list(points.values())


def _split(text: str) -> tuple[str, str, str]:
    series, rest = text.split(" ", 1)
    fields, ts = rest.rsplit(" ", 1)
    return series, fields, ts


def _value(text: str) -> Any:
    if text.startswith('"'):
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if text.endswith("i"):
        return int(text[:-1])
    return float(text)


def _birth(ts_ns: int, **extra: Any) -> StatusEvent:
    return StatusEvent(
        site="s", device="d", ts_ns=ts_ns, state="online", interval_s=10.0, model="yolo",
        model_version="1.4", lat=48.1, lon=11.5, **extra,
    )  # fmt: skip


def _will() -> StatusEvent:
    return StatusEvent(site="s", device="d", ts_ns=0, state="offline", reason="lwt")


def _reading(ts_ns: int) -> Telemetry:
    return Telemetry(site="s", device="d", readings=(Reading(ts_ns=ts_ns, metrics={"x": 1.0}),))


def test_a_last_will_keeps_the_births_description() -> None:
    rows = _store([(_birth(100 * S), 101 * S, "i1"), (_will(), 200 * S, "i1")])
    [snapshot], info = parse_shadow(rows)
    assert (snapshot.status_state, snapshot.status_reason) == ("offline", "lwt")
    assert snapshot.status_received_ns == 200 * S
    assert snapshot.interval_s == 10.0
    assert info[("s", "d")].model == "yolo"
    assert (info[("s", "d")].lat, info[("s", "d")].lon) == (48.1, 11.5)


def test_a_new_birth_clears_the_old_reason() -> None:
    rows = _store([(_will(), 200 * S, "i1"), (_birth(300 * S), 301 * S, "i1")])
    [snapshot], _ = parse_shadow(rows)
    assert (snapshot.status_state, snapshot.status_reason) == ("online", None)
    assert snapshot.status_ns == 300 * S


def test_an_old_retained_birth_does_not_hide_a_newer_will() -> None:
    # An ingest restarts and gets the broker's retained birth again, stamped with its own
    # (old) time; the will heard live before stays the device's state.
    rows = _store(
        [
            (_birth(100 * S), 101 * S, "i1"),
            (_will(), 500 * S, "i1"),
            (_birth(100 * S), 100 * S, SHADOW_RETAINED_WRITER),
        ]
    )
    [snapshot], _ = parse_shadow(rows)
    assert snapshot.status_state == "offline"


def test_replicas_merge_by_receipt_time() -> None:
    # Two ingests on a shared subscription: each group of fields comes from whichever heard it
    # last, whatever order their writes reached InfluxDB in.
    rows = _store(
        [
            (_reading(300 * S), 301 * S, "i2"),
            (_birth(100 * S, firmware="2.0"), 101 * S, "i1"),
            (_birth(200 * S, firmware="2.1"), 201 * S, "i2"),
            (_reading(250 * S), 251 * S, "i1"),
            (_will(), 400 * S, "i1"),
        ]
    )
    [snapshot], info = parse_shadow(rows)
    assert snapshot.telemetry_received_ns == 301 * S
    assert snapshot.last_telemetry_ns == 300 * S
    assert snapshot.status_state == "offline"
    assert info[("s", "d")].firmware == "2.1"


def test_a_device_only_heard_in_telemetry_is_listed() -> None:
    [snapshot], info = parse_shadow(_store([(_reading(5 * S), 6 * S, "i1")]))
    assert snapshot.status_state is None
    assert snapshot.telemetry_received_ns == 6 * S
    assert info[("s", "d")].model is None


def test_labels_come_back_as_the_status_gave_them() -> None:
    birth = _birth(100 * S, labels=(("ring", "canary"),))
    _, info = parse_shadow(_store([(birth, 101 * S, "i1")]))
    assert info[("s", "d")].labels == (("ring", "canary"),)


def test_the_rebuilt_shadow_reads_as_the_history_did() -> None:
    # An upgrade: the history's reader gives snapshots; the shadow rebuilt from them reads
    # back the same, and a later live write wins over it.
    rows = _store([(_birth(100 * S), 101 * S, "i1"), (_will(), 200 * S, "i1")])
    rows += _store([(_reading(150 * S), 151 * S, "i1")])
    before, info = parse_shadow(rows)
    rebuilt = [text for snap in before for text in rebuilt_shadow_lines(snap, info[("s", "d")])]
    after, info_after = parse_shadow(_fold(rebuilt))
    assert after == before
    assert info_after == info
    live = shadow_line(_birth(300 * S), 301 * S, writer="i1")
    [snapshot], _ = parse_shadow(_fold([*rebuilt, live]))
    assert snapshot.status_state == "online"
