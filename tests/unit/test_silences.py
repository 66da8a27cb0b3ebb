"""Silences and maintenance windows: matching, one-off and recurring, expiry, validation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from edgewatch.silences import (
    Silence,
    SilenceEvent,
    fold_silences,
    in_maintenance,
    new_silence,
    parse_silence_rows,
    recurrence_rrule,
    silence_line,
    silenced,
)

S = 1_000_000_000


def ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * S


def test_one_off_window_matches_and_ends_by_itself() -> None:
    w = new_silence(
        kind="maintenance",
        created_by="ann",
        reason="swap",
        now_ns=0,
        starts_ns=10 * S,
        ends_ns=20 * S,
        site="s1",
        device="cam*",
    )
    assert not w.active_at(5 * S)
    assert w.active_at(15 * S) and w.matches("s1", "cam7")
    assert not w.matches("s2", "cam7")
    assert not w.active_at(20 * S)
    assert in_maintenance([w], "s1", "cam7", 15 * S)


def test_recurring_window() -> None:
    w = new_silence(
        kind="maintenance",
        created_by="ann",
        reason="nightly reboot",
        now_ns=0,
        starts_ns=ns("2026-01-01T02:00:00"),
        ends_ns=ns("2027-01-01T00:00:00"),
        site="s1",
        rrule="FREQ=DAILY",
        duration_s=1800,
    )
    assert w.active_at(ns("2026-03-05T02:10:00"))
    assert not w.active_at(ns("2026-03-05T02:40:00"))


def test_a_cron_window_is_the_rrule_it_means() -> None:
    # Weekdays at 02:30 UTC for 30 min; stored as written, read as an RRULE.
    w = new_silence(
        kind="maintenance",
        created_by="ann",
        reason="nightly reboot",
        now_ns=0,
        starts_ns=ns("2026-01-01T00:00:00"),
        ends_ns=ns("2027-01-01T00:00:00"),
        site="s1",
        rrule="30 2 * * mon-fri",
        duration_s=1800,
    )
    assert w.rrule == "30 2 * * mon-fri"
    assert w.active_at(ns("2026-03-05T02:45:00"))  # a Thursday
    assert not w.active_at(ns("2026-03-05T03:05:00"))
    assert not w.active_at(ns("2026-03-07T02:45:00"))  # a Saturday
    assert recurrence_rrule("*/15 0-6/2 * jan,jul 7") == (
        "FREQ=MINUTELY;BYSECOND=0;BYMINUTE=0,15,30,45;BYHOUR=0,2,4,6;BYMONTH=1,7;BYDAY=SU"
    )
    assert recurrence_rrule("FREQ=DAILY") == "FREQ=DAILY"


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("61 * * * *", "minute '61'"),
        ("0 2 1 * mon", "not both"),
        ("0 2 * * blursday", "day of week"),
        ("0 5-2 * * *", "backwards"),
        ("*/0 * * * *", "step"),
    ],
)
def test_a_bad_cron_names_its_field(cron: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        recurrence_rrule(cron)


def test_expire_early_is_folded_with_who() -> None:
    w = new_silence(
        kind="silence",
        created_by="ann",
        reason="noisy",
        now_ns=1,
        starts_ns=0,
        ends_ns=100 * S,
        alert_type="gpu_hot",
    )
    events = [
        SilenceEvent("create", 1, w),
        SilenceEvent("expire", 50 * S, silence_id=w.silence_id, user="bob", reason="fixed"),
    ]
    (folded,) = fold_silences(events)
    assert folded.expired_by == "bob"
    assert not folded.active_at(60 * S)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reason": ""}, "reason"),
        ({"site": ""}, "at least one matcher"),
        ({"ends_ns": 0}, "end must come after"),
        ({"rrule": "FREQ=SOMETIMES", "duration_s": 10}, "RRULE"),
        ({"rrule": "FREQ=DAILY"}, "duration"),
        ({"site": "s1;drop"}, "site"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict[str, object], message: str) -> None:
    values: dict[str, object] = {
        "kind": "silence",
        "created_by": "ann",
        "reason": "r",
        "now_ns": 0,
        "starts_ns": 0,
        "ends_ns": 10,
        "site": "s1",
    }
    values.update(kwargs)
    with pytest.raises(ValueError, match=message):
        new_silence(**values)  # type: ignore[arg-type]


def _create_row(silence: Silence, **extra: object) -> dict[str, object]:
    """A pivoted `silence` row as the query returns it (what `silence_line` stored)."""
    return {
        "time_ns": silence.created_ns, "action": "create", "id": silence.silence_id,
        "kind": silence.kind, "user": silence.created_by, "reason": silence.reason,
        "starts_ns": silence.starts_ns, "ends_ns": silence.ends_ns, "site": silence.site,
        "device": silence.device, "type": silence.type, "rrule": "", "duration_s": 0.0,
        **extra,
    }  # fmt: skip


def test_a_label_matcher_mutes_only_devices_carrying_every_label() -> None:
    mute = new_silence(
        kind="silence",
        created_by="ann",
        reason="canary rollout",
        now_ns=0,
        starts_ns=0,
        ends_ns=100 * S,
        labels="ring=canary, hardware=jetson-orin",
    )
    assert mute.labels == (("hardware", "jetson-orin"), ("ring", "canary"))
    canary = {"ring": "canary", "hardware": "jetson-orin"}
    assert silenced([mute], "s1", "cam1", "model_drift", 5 * S, labels=canary) is mute
    assert silenced([mute], "s1", "cam2", "model_drift", 5 * S, labels={"ring": "canary"}) is None
    assert silenced([mute], "s1", "cam3", "model_drift", 5 * S) is None  # labels unknown
    assert 'labels="hardware=jetson-orin,ring=canary"' in silence_line(
        SilenceEvent("create", 0, mute)
    )


def test_labels_are_stored_with_the_silence_and_old_silences_still_load() -> None:
    mute = new_silence(
        kind="maintenance", created_by="ann", reason="swap", now_ns=1, starts_ns=1,
        ends_ns=100 * S, site="s1", labels=["ring=canary"],
    )  # fmt: skip
    old = replace(mute, silence_id="old1", labels=())
    rows = [
        _create_row(mute, labels="ring=canary"),
        _create_row(old),  # stored before silences had labels: no column at all
        _create_row(replace(mute, silence_id="odd"), labels="not a selector"),
    ]
    loaded = {s.silence_id: s for s in fold_silences(parse_silence_rows(rows))}
    assert loaded[mute.silence_id].labels == (("ring", "canary"),)
    assert loaded["old1"].labels == ()
    assert loaded["old1"].matches("s1", "cam1")
    # An unreadable stored matcher never widens the mute.
    assert not loaded["odd"].matches("s1", "cam1", labels={"ring": "canary"})
    assert in_maintenance(list(loaded.values()), "s1", "cam1", 5 * S, labels={"ring": "canary"})


def test_a_label_matcher_alone_is_enough_and_a_bad_one_is_named() -> None:
    with pytest.raises(ValueError, match="key=value"):
        new_silence(
            kind="silence", created_by="ann", reason="x", now_ns=0, starts_ns=0, ends_ns=S,
            labels="ring",
        )  # fmt: skip
    with pytest.raises(ValueError, match="site, device, type or labels"):
        new_silence(kind="silence", created_by="ann", reason="x", now_ns=0, starts_ns=0, ends_ns=S)
