"""The chaos reconciler (bench/reconcile.py): each check counts what it promises; the
chaos scenario (bench/chaos.py) cuts a site off for long enough."""

from __future__ import annotations

from bench.chaos import Scenario
from bench.reconcile import (
    HOUR_NS,
    MINUTE_NS,
    GroundTruth,
    RawPoint,
    RollupMean,
    SentReading,
    Stored,
    StoredSeq,
    format_table,
    open_alerts_of,
    reconcile,
)

T0 = 1_700_000_000 * 1_000_000_000 // HOUR_NS * HOUR_NS


def _stored(**kw: object) -> Stored:
    values: dict[str, object] = {
        "seqs": (),
        "raw": (),
        "rollup_1m": (),
        "rollup_1h": (),
        "progress_1m_ns": T0 + 2 * HOUR_NS,
        "progress_1h_ns": T0 + 2 * HOUR_NS,
        "open_alerts": frozenset(),
        "dead_letters": {},
    }
    values.update(kw)
    return Stored(**values)  # type: ignore[arg-type]


def _truth(**kw: object) -> GroundTruth:
    values: dict[str, object] = {"sent": (), "open_alerts": frozenset(), "dead_letters": {}}
    values.update(kw)
    return GroundTruth(**values)  # type: ignore[arg-type]


def _by_name(truth: GroundTruth, stored: Stored) -> dict[str, tuple[int, int]]:
    return {c.name: (c.expected, c.found) for c in reconcile(truth, stored)}


def test_a_lost_a_duplicated_and_an_unsent_seq_are_each_counted() -> None:
    sent = tuple(SentReading("s", "d", T0 + i, i) for i in range(4))
    stored = _stored(
        seqs=(
            StoredSeq("s", "d", T0 + 0, 0),
            StoredSeq("s", "d", T0 + 1, 1),
            StoredSeq("s", "d", T0 + 9, 1),  # seq 1 twice
            StoredSeq("s", "d", T0 + 3, 3),  # seq 2 lost
            StoredSeq("s", "d", T0 + 7, 7),  # never sent
        )
    )
    rows = _by_name(_truth(sent=sent), stored)
    assert rows["seq sent, stored exactly once"] == (4, 2)
    assert rows["seq stored, never sent"] == (0, 1)


def test_two_readings_of_a_device_with_one_timestamp_are_found() -> None:
    sent = (SentReading("s", "d", T0, 0), SentReading("s", "d", T0, 1))
    assert _by_name(_truth(sent=sent), _stored())["readings with a ts of their own"] == (2, 1)


def test_minute_and_hour_means_are_compared_with_raw_and_open_windows_skipped() -> None:
    raw = (
        RawPoint("s", "d", "t", T0 + 1, 1.0),
        RawPoint("s", "d", "t", T0 + 2, 2.0),
        RawPoint("s", "d", "t", T0 + MINUTE_NS, 10.0),
        RawPoint("s", "d", "t", T0 + HOUR_NS, 5.0),  # its hour is still open
    )
    m1 = (
        RollupMean("s", "d", "t", T0, 1.5, 2),
        RollupMean("s", "d", "t", T0 + MINUTE_NS, 10.5, 1),  # wrong
        RollupMean("s", "d", "t", T0 + HOUR_NS, 5.0, 1),
    )
    h1 = (RollupMean("s", "d", "t", T0, (1.0 + 2.0 + 10.5) / 3, 3),)
    stored = _stored(raw=raw, rollup_1m=m1, rollup_1h=h1, progress_1h_ns=T0 + HOUR_NS)
    rows = _by_name(_truth(), stored)
    assert rows["closed minutes: 1m mean = raw mean"] == (3, 2)
    # The hour equals the weighted 1m means but not the raw mean (13/3 against 4.33..).
    assert rows["closed hours: 1h mean = 1m weighted = raw"] == (1, 0)
    fixed = _stored(
        raw=raw,
        rollup_1m=(m1[0], RollupMean("s", "d", "t", T0 + MINUTE_NS, 10.0, 1), m1[2]),
        rollup_1h=(RollupMean("s", "d", "t", T0, 13.0 / 3, 3),),
        progress_1h_ns=T0 + HOUR_NS,
    )
    assert all(c.equal for c in reconcile(_truth(), fixed))


def test_alerts_and_dead_letters_compare_both_ways() -> None:
    truth = _truth(
        open_alerts=open_alerts_of(
            [
                ("s", "d", "overheat", "raised"),
                ("s", "d", "drift", "raised"),
                ("s", "d", "drift", "cleared"),
            ]
        ),
        dead_letters={"json": 1, "schema": 3},
    )
    stored = _stored(
        open_alerts=frozenset({("s", "d", "drift")}), dead_letters={"schema": 3, "internal": 1}
    )
    rows = _by_name(truth, stored)
    assert rows["open alerts (device rules) open in the fold"] == (1, 0)
    assert rows["open in the fold, not open on the device"] == (0, 1)
    assert rows["dead letters, code json"] == (1, 0)
    assert rows["dead letters, code internal"] == (0, 1)
    table = format_table(reconcile(truth, stored))
    assert "NO" in table and "expected" in table


def test_the_chaos_scenarios_cut_a_site_off_for_more_than_ten_device_minutes() -> None:
    for scenario in (
        Scenario(real_seconds=150.0),
        Scenario(sites=5, devices_per_site=6, real_seconds=300.0),
    ):
        first, end = scenario.cut_steps
        assert (end - first - 4) * scenario.interval_s > 10 * 60
        assert 0 < first < end < scenario.steps
