"""The service loop over an in-memory store: record before send, retry, restart without resend.

The store here keeps what the real one keeps in InfluxDB (the integration tests use the real
one); the sender records every call, and fails while told to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alerter.delivery import Outcome
from alerter.evaluate import DeviceView, FleetInput, InstanceKey, InstanceState
from alerter.notify import LogRecord
from alerter.service import Alerter, DeliveryPolicy
from alerter.store import StoreUnavailableError
from edgewatch.alerts import StoredAlertEvent, fold_alerts
from edgewatch.health import DeviceHealth, HealthState
from edgewatch.rules import parse_rules

S = 1_000_000_000


@dataclass
class MemoryStore:
    fleet_input: FleetInput
    events: list[StoredAlertEvent] = field(default_factory=list)
    states: dict[InstanceKey, InstanceState] = field(default_factory=dict)
    log: list[LogRecord] = field(default_factory=list)
    down: bool = False
    slow: bool = False  # queries time out, the ping answers
    clock: list[int] = field(default_factory=lambda: [0])

    @property
    def config(self) -> Any:
        return type("C", (), {"url": "http://db"})()

    def ping(self) -> bool:
        return not self.down

    def _check(self) -> None:
        if self.down or self.slow:
            raise StoreUnavailableError("down" if self.down else "read timed out")

    def rule_states(self, now_ns: int) -> dict[InstanceKey, InstanceState]:
        self._check()
        return dict(self.states)

    def notification_log(self, now_ns: int) -> list[LogRecord]:
        self._check()
        return list(self.log)

    def silences(self, now_ns: int) -> list[Any]:
        self._check()
        return []

    def fleet(self, config: Any, silences: Any, now_ns: int) -> FleetInput:
        self._check()
        return self.fleet_input

    def write_alert_events(self, events: Any) -> None:
        self._check()
        self.events.extend(
            StoredAlertEvent(e.site, e.device, e.type, e.ts_ns, e.severity, e.state, e.message)
            for e in events
        )

    def write_rule_states(self, states: Any, keys: Any) -> None:
        self.states.update({k: states[k] for k in keys})

    def write_rule_evals(self, summary: Any, duration_ms: float) -> None:
        pass

    def alert_records(self, now_ns: int) -> Any:
        return fold_alerts(self.events)

    def write_notifications(self, records: Any) -> list[LogRecord]:
        self._check()
        out = []
        for n, status, attempt, error in records:
            self.clock[0] += 1
            out.append(
                LogRecord(
                    n.key,
                    self.clock[0],
                    status,
                    attempt,
                    error,
                    n.alert_id,
                    n.site,
                    n.device,
                    n.type,
                    n.severity,
                    n.receiver,
                    n.target,
                    n.kind,
                    n.title,
                    n.body,
                )
            )
        self.log.extend(out)
        return out


@dataclass
class RecordingSender:
    failing: bool = False
    calls: list[str] = field(default_factory=list)

    def send(self, url: str, *, key: str, title: str, body: str, resolved: bool) -> Outcome:
        self.calls.append(key)
        return Outcome(not self.failing, "refused" if self.failing else "")


def offline_fleet() -> FleetInput:
    health = DeviceHealth("s1", "cam1", HealthState.OFFLINE, "lwt", 0, None)
    return FleetInput(devices=(DeviceView(health=health, interval_s=1.0),), ingest_silent=False)


def make(store: MemoryStore, sender: RecordingSender, now: list[int]) -> Alerter:
    return Alerter(
        store=store,  # type: ignore[arg-type]
        sender=sender,
        rules=parse_rules(""),
        urls={"default": ("json://127.0.0.1:1/a",)},
        policy=DeliveryPolicy(retry_base_s=1, retry_max_s=4, give_up_s=3600),
        clock=lambda: now[0],
    )


def test_recorded_before_sent_and_not_resent_after_restart() -> None:
    store, sender, now = MemoryStore(offline_fleet()), RecordingSender(), [10 * S]
    make(store, sender, now).cycle()
    statuses = [r.status for r in store.log]
    assert statuses == ["pending", "sent"]
    now[0] += S
    make(store, sender, now).cycle()  # a new process: state from the store
    assert len(sender.calls) == 1


def test_retried_with_the_same_key_until_delivered() -> None:
    store, sender, now = MemoryStore(offline_fleet()), RecordingSender(failing=True), [10 * S]
    alerter = make(store, sender, now)
    for _ in range(5):
        alerter.cycle()
        now[0] += S
    sender.failing = False
    for _ in range(5):
        alerter.cycle()
        now[0] += S
    assert len(set(sender.calls)) == 1
    assert sender.calls.count(sender.calls[0]) >= 3
    assert store.log[-1].status == "sent"


def test_influxdb_down_is_notified_once_and_resolved() -> None:
    store, sender, now = MemoryStore(offline_fleet(), down=True), RecordingSender(), [10 * S]
    alerter = make(store, sender, now)
    alerter.cycle()
    alerter.cycle()
    assert len(sender.calls) == 1 and "influxdb_down" in sender.calls[0]
    store.down = False
    alerter.cycle()
    assert any(k.endswith("resolved-0") for k in sender.calls)


def test_a_slow_query_on_a_live_influxdb_pages_nobody() -> None:
    store, sender, now = MemoryStore(offline_fleet(), slow=True), RecordingSender(), [10 * S]
    make(store, sender, now).cycle()
    assert sender.calls == []
