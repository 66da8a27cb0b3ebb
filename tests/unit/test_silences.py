"""Silences and maintenance windows: matching, one-off and recurring, expiry, validation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edgewatch.silences import (
    SilenceEvent,
    fold_silences,
    in_maintenance,
    new_silence,
    recurrence_rrule,
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
