"""Edge-side filtering: the deadband and the alert hysteresis cut messages, not information."""

from __future__ import annotations

import math
import random

import pytest

from edge.filters import (
    AlertRule,
    AlertRulesState,
    DeadbandConfig,
    DeadbandState,
    deadband,
    evaluate_alerts,
    parse_deadband_spec,
    parse_rule_spec,
)

NS = 1_000_000_000
READINGS = 2000


def _temperature_trace(seed: int) -> list[float]:
    """A slow daily-ish swing with sensor noise and two sudden jumps."""
    rng = random.Random(seed)
    values = []
    for i in range(READINGS):
        value = 60.0 + 8.0 * math.sin(i / 300.0) + rng.gauss(0, 0.15)
        if 700 <= i < 760:
            value += 20.0  # a real event: must be seen
        values.append(value)
    return values


def test_deadband_cuts_messages_without_losing_a_change_beyond_the_band() -> None:
    band = 0.5
    config = DeadbandConfig(bands={"cpu_temp_c": band}, heartbeat_s=60.0)
    state = DeadbandState()
    trace = _temperature_trace(seed=7)
    sent = 0
    receiver_view: float | None = None
    last_sent_ns = 0
    for i, value in enumerate(trace):
        ts_ns = i * 10 * NS  # one reading every 10 s
        state, out = deadband(config, state, ts_ns, {"cpu_temp_c": value})
        if out:
            sent += 1
            receiver_view = float(out["cpu_temp_c"])
            last_sent_ns = ts_ns
        # The receiver is never more than one band from the truth...
        assert receiver_view is not None
        assert abs(receiver_view - value) <= band
        # ...and never silent longer than the heartbeat.
        assert ts_ns - last_sent_ns < 60 * NS
    print(f"deadband 0.5 C over {READINGS} readings: {sent} sent, {READINGS - sent} filtered")
    assert sent < READINGS / 3  # 2000 readings without the filter


def test_deadband_heartbeat_sends_a_flat_metric_regularly() -> None:
    config = DeadbandConfig(bands={"v": 1.0}, heartbeat_s=30.0)
    state = DeadbandState()
    sent_at = []
    for i in range(100):
        state, out = deadband(config, state, i * 5 * NS, {"v": 1.0})
        if out:
            sent_at.append(i * 5)
    assert sent_at == list(range(0, 500, 30))


def test_deadband_sends_booleans_on_change_and_unbanded_metrics_always() -> None:
    config = DeadbandConfig(bands={"camera_ok": 0.0, "t": 1.0}, heartbeat_s=1000.0)
    state = DeadbandState()
    outs = []
    for i, (ok, other) in enumerate([(True, 1.0), (True, 2.0), (False, 3.0), (False, 4.0)]):
        state, out = deadband(config, state, i * NS, {"camera_ok": ok, "fps": other, "t": 20.0})
        outs.append(out)
    assert [o.get("camera_ok") for o in outs] == [True, None, False, None]
    assert [o["fps"] for o in outs] == [1.0, 2.0, 3.0, 4.0]
    assert [o.get("t") for o in outs] == [20.0, None, None, None]


def _hovering(seed: int) -> list[float]:
    rng = random.Random(seed)
    # 40 readings climbing to the limit, 200 hovering around it, 40 cooling down.
    up = [70.0 + i * 0.4 for i in range(40)]
    hover = [85.0 + rng.uniform(-1.5, 1.5) for _ in range(200)]
    down = [84.0 - i * 0.5 for i in range(40)]
    return up + hover + down


def _count_transitions(rule: AlertRule, values: list[float]) -> list[str]:
    state = AlertRulesState()
    events: list[str] = []
    for value in values:
        state, transitions = evaluate_alerts((rule,), state, {"gpu_temp_c": value})
        events.extend(t.state for t in transitions)
    return events


def test_hysteresis_stops_a_value_at_the_limit_from_flapping() -> None:
    values = _hovering(seed=3)
    flapping = _count_transitions(
        AlertRule("overheat", "critical", "gpu_temp_c", 85.0, 0.0), values
    )
    steady = _count_transitions(AlertRule("overheat", "critical", "gpu_temp_c", 85.0, 5.0), values)
    print(f"hovering at 85 C: {len(flapping)} events without hysteresis, {len(steady)} with 5 C")
    assert len(flapping) > 50
    assert steady == ["raised", "cleared"]


def test_below_rules_and_booleans() -> None:
    rule = AlertRule("camera_loss", "major", "camera_ok", 0.5, 0.0, "below")
    state = AlertRulesState()
    seen = []
    for ok in (True, False, False, True, True):
        state, transitions = evaluate_alerts((rule,), state, {"camera_ok": ok})
        seen.extend(t.state for t in transitions)
    assert seen == ["raised", "cleared"]


def test_alert_messages_say_what_happened() -> None:
    rule = AlertRule("overheat", "critical", "gpu_temp_c", 85.0, 5.0, unit="C")
    _, transitions = evaluate_alerts((rule,), AlertRulesState(), {"gpu_temp_c": 91.5})
    assert transitions[0].message == "gpu_temp_c at 91.5 C, above 85 C"


def test_cli_specs() -> None:
    rule = parse_rule_spec("overheat:critical:gpu_temp_c>85/5")
    assert (rule.threshold, rule.hysteresis, rule.direction) == (85.0, 5.0, "above")
    assert parse_rule_spec("model_drift:major:model_confidence<0.6").direction == "below"
    assert parse_deadband_spec("cpu_temp_c=0.5") == ("cpu_temp_c", 0.5)
    for bad in ("overheat:loud:gpu_temp_c>85", "gpu_temp_c>85", "overheat:critical:X>1"):
        with pytest.raises(ValueError):
            parse_rule_spec(bad)
    with pytest.raises(ValueError):
        parse_deadband_spec("cpu_temp_c=-1")
