"""Rule evaluation as a pure function: pending/firing, hysteresis, no-data, site_down."""

from __future__ import annotations

from alerter.evaluate import DeviceView, FleetInput, InstanceKey, RuleState, evaluate
from edgewatch.health import DeviceHealth, HealthState
from edgewatch.model_fleet import DriftResult, IntegrityFlag
from edgewatch.rules import parse_rules

S = 1_000_000_000


def dev(
    device: str, state: HealthState, *, site: str = "s1", since: int = 0, **kw: object
) -> DeviceView:
    health = DeviceHealth(site, device, state, "test", since, None)
    return DeviceView(health=health, interval_s=10.0, **kw)  # type: ignore[arg-type]


def run(config_text: str, frames: list[tuple[int, FleetInput]]):  # type: ignore[no-untyped-def]
    config = parse_rules(config_text)
    states: dict = {}
    events = []
    for now, fleet in frames:
        result = evaluate(config, fleet, states, now)
        states = dict(result.states)
        events.extend(result.events)
    return states, events


def test_device_offline_fires_after_twice_its_interval_and_clears_when_back() -> None:
    off = FleetInput(
        devices=(dev("cam1", HealthState.OFFLINE, since=100 * S),), ingest_silent=False
    )
    on = FleetInput(devices=(dev("cam1", HealthState.ONLINE),), ingest_silent=False)
    states, events = run("", [(105 * S, off), (115 * S, off), (120 * S, off), (130 * S, on)])
    # Timed from when the device went OFFLINE (100 s): 2 x 10 s later, not 2 x 10 s after
    # the alerter first saw it.
    assert [(e.type, e.state, e.ts_ns) for e in events] == [
        ("device_offline", "raised", 120 * S),
        ("device_offline", "cleared", 130 * S),
    ]
    assert states[InstanceKey("device_offline", "s1", "cam1")].state == RuleState.OK


def test_pending_is_not_an_alert() -> None:
    off = FleetInput(
        devices=(dev("cam1", HealthState.OFFLINE, since=100 * S),), ingest_silent=False
    )
    states, events = run("", [(105 * S, off)])
    assert events == []
    assert states[InstanceKey("device_offline", "s1", "cam1")].state == RuleState.PENDING


def test_maintenance_raises_no_device_offline() -> None:
    off = FleetInput(
        devices=(dev("cam1", HealthState.OFFLINE, since=0, in_maintenance=True),),
        ingest_silent=False,
    )
    _, events = run("", [(500 * S, off)])
    assert events == []


def test_ingest_silent_keeps_device_states_and_raises_ingest_down_after_its_for() -> None:
    off = FleetInput(devices=(dev("cam1", HealthState.OFFLINE, since=0),), ingest_silent=False)
    silent = FleetInput(devices=(dev("cam1", HealthState.UNKNOWN),), ingest_silent=True)
    states, events = run("", [(100 * S, off), (110 * S, silent), (140 * S, silent)])
    assert [(e.type, e.state, e.ts_ns) for e in events] == [
        ("device_offline", "raised", 100 * S),
        ("ingest_down", "raised", 140 * S),
    ]
    assert states[InstanceKey("device_offline", "s1", "cam1")].state == RuleState.FIRING


def test_site_down_is_one_alert_for_the_site() -> None:
    devices = tuple(dev(f"cam{i}", HealthState.OFFLINE, since=0) for i in range(5))
    _, events = run("", [(1 * S, FleetInput(devices=devices, ingest_silent=False))])
    site = [e for e in events if e.type == "site_down"]
    assert len(site) == 1
    assert site[0].device == "_site"


RULE = """
builtins: {device_offline: {enabled: false}, site_down: {enabled: false}}
rules:
  - {name: gpu_hot, metric: gpu_c, threshold: 85, clear_threshold: 80, for: 20s,
     keep_firing_for: 10s, match: {model: ["yolo*"]}}
"""


def metric(value: float | None, model: str = "yolo-v8") -> FleetInput:
    metrics = {} if value is None else {"gpu_c": value}
    return FleetInput(
        devices=(dev("cam1", HealthState.ONLINE, model=model, metrics=metrics),),
        ingest_silent=False,
    )


def test_threshold_with_for_hysteresis_and_keep_firing_for() -> None:
    frames = [
        (0 * S, metric(90)),  # pending
        (10 * S, metric(90)),
        (20 * S, metric(90)),  # held 20 s: fires
        (30 * S, metric(82)),  # below threshold, above clear: still firing
        (40 * S, metric(None)),  # no data: unchanged
        (50 * S, metric(79)),  # below clear: quiet starts (last true at 30 s)
        (55 * S, metric(79)),
    ]
    states, events = run(RULE, frames)
    assert [(e.state, e.ts_ns) for e in events] == [("raised", 20 * S), ("cleared", 50 * S)]
    assert states[InstanceKey("gpu_hot", "s1", "cam1")].state == RuleState.OK


def test_a_blip_shorter_than_for_raises_nothing() -> None:
    _, events = run(RULE, [(0, metric(90)), (10 * S, metric(70)), (30 * S, metric(90))])
    assert events == []


def test_matchers_scope_the_rule() -> None:
    _, events = run(RULE, [(0, metric(99, model="resnet")), (60 * S, metric(99, model="resnet"))])
    assert events == []


def test_rate_rule() -> None:
    text = """
builtins:
  {device_offline: {enabled: false}, site_down: {enabled: false}, ingest_down: {enabled: false}}
rules: [{name: heating, kind: rate, metric: cpu_c, threshold: 0.1, window: 60}]
"""
    fleet = FleetInput(
        devices=(dev("cam1", HealthState.ONLINE),),
        ingest_silent=False,
        rates={("s1", "cam1", "cpu_c", 60.0): 0.5},
    )
    _, events = run(text, [(0, fleet)])
    assert [(e.type, e.state, e.value) for e in events] == [("heating", "raised", 0.5)]


def _drift(psi: float | None) -> DriftResult:
    return DriftResult("s1", "cam1", psi, 30, 30, 0.9, 0.4 if psi else 0.9)


def test_model_drift_raises_by_rule_clears_and_no_verdict_keeps_the_state() -> None:
    def fleet(psi: float | None) -> FleetInput:
        return FleetInput(
            devices=(dev("cam1", HealthState.ONLINE),),
            ingest_silent=False,
            drift={("s1", "cam1"): _drift(psi)},
        )

    states, events = run("", [(1 * S, fleet(3.0)), (2 * S, fleet(None)), (3 * S, fleet(0.01))])
    drift = [e for e in events if e.type == "model_drift"]
    assert [e.state for e in drift] == ["raised", "cleared"]
    assert "PSI 3.00" in drift[0].message
    assert states[InstanceKey("model_drift", "s1", "cam1")].state == RuleState.OK


def test_model_integrity_raises_for_a_flagged_device_only() -> None:
    flag = IntegrityFlag("s1", "cam2", "yolo", "1.5.0", "b" * 64, "a" * 64, "majority")
    fleet = FleetInput(
        devices=(dev("cam1", HealthState.ONLINE), dev("cam2", HealthState.ONLINE)),
        ingest_silent=False,
        integrity={("s1", "cam2"): flag},
        hashed=frozenset({("s1", "cam1"), ("s1", "cam2")}),
    )
    _, events = run("builtins: {model_integrity: {severity: major}}", [(1 * S, fleet)])
    (event,) = [e for e in events if e.type == "model_integrity"]
    assert (event.device, event.state, event.severity) == ("cam2", "raised", "major")


def test_a_label_matcher_scopes_a_rule_to_a_device_group() -> None:
    config = (
        "rules:\n  - {name: warm, metric: cpu_temp_c, threshold: 40,"
        " match: {labels: {ring: canary}}}\n"
    )
    fleet = FleetInput(
        devices=(
            dev("cam1", HealthState.ONLINE, metrics={"cpu_temp_c": 50.0},
                labels={"ring": "canary"}),
            dev("cam2", HealthState.ONLINE, metrics={"cpu_temp_c": 50.0},
                labels={"ring": "stable"}),
        ),
        ingest_silent=False,
    )  # fmt: skip
    _, events = run(config, [(1 * S, fleet)])
    assert [(e.type, e.device) for e in events] == [("warm", "cam1")]
