"""alerter room: the `edgewatch alerter` service loop, I/O around the pure evaluation.

Each cycle: read silences and the fleet, evaluate every rule (pure), store the alert events
and the rule states that changed, fold the alerts, plan notifications (pure), record each one
as `pending` before sending it, then deliver what is due and record every attempt. All state
is in InfluxDB, read back on start: a restart (even kill -9) loses nothing, and resends only
a notification sent but not yet recorded as sent (same idempotency key, so a receiver that
keeps keys processes it once).

InfluxDB unreachable is the one alert that cannot be recorded: it is sent straight to the
default receivers, once per outage, and resolved when InfluxDB answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from alerter.delivery import Outcome
from alerter.evaluate import InstanceKey, InstanceState, evaluate, rule_summary
from alerter.notify import (
    KIND_RESOLVED,
    STATUS_ABANDONED,
    STATUS_FAILED,
    STATUS_SENT,
    LogRecord,
    Message,
    Notification,
    due_for_delivery,
    fold_log,
    merge_batches,
    plan_notifications,
)
from alerter.store import AlerterStore, StoreUnavailableError
from edgewatch.rules import DEFAULT_RECEIVER, SYSTEM_SITE, TYPE_INFLUXDB_DOWN, RulesConfig

logger = logging.getLogger(__name__)
NS_PER_SECOND = 1_000_000_000


class Sender(Protocol):
    """What the service needs of a sender (AppriseSender in production)."""

    def send(self, url: str, *, key: str, title: str, body: str, resolved: bool) -> Outcome:
        """Deliver one message; an exception or refusal is a failed Outcome, never a raise."""


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    retry_base_s: float = 5.0
    retry_max_s: float = 300.0
    give_up_s: float = 86400.0


@dataclass(frozen=True, slots=True)
class CycleReport:
    events: int
    planned: int
    sent: int
    failed: int
    duration_ms: float
    store_ok: bool


class Alerter:
    def __init__(
        self,
        *,
        store: AlerterStore,
        sender: Sender,
        rules: RulesConfig,
        urls: Mapping[str, tuple[str, ...]],
        policy: DeliveryPolicy,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._store = store
        self._sender = sender
        self._rules = rules
        self._urls = urls
        self._policy = policy
        self._clock = clock
        self._states: dict[InstanceKey, InstanceState] | None = None
        self._log: dict[str, Notification] = {}
        self._influx_down_since_ns: int | None = None

    @property
    def targets(self) -> dict[str, int]:
        return {name: len(urls) for name, urls in self._urls.items()}

    def cycle(self) -> CycleReport:
        started = time.perf_counter()
        now_ns = self._clock()
        try:
            if self._states is None:
                self._states = self._store.rule_states(now_ns)
                self._log = fold_log(self._store.notification_log(now_ns))
                logger.info(
                    "state loaded: %d rule instances, %d notifications on record",
                    len(self._states),
                    len(self._log),
                )
            silences = self._store.silences(now_ns)
            fleet = self._store.fleet(self._rules, silences, now_ns)
            result = evaluate(self._rules, fleet, self._states, now_ns)
            # Events first: a crash before the state is written re-raises (a repeat raise
            # updates the same alert), never loses one.
            self._store.write_alert_events(result.events)
            self._store.write_rule_states(result.states, result.changed)
            self._states = dict(result.states)
            for event in result.events:
                logger.info(
                    "rule %s %s on %s/%s: %s",
                    event.rule,
                    event.state,
                    event.site,
                    event.device,
                    event.message,
                )
            records = self._store.alert_records(now_ns)
            plan = plan_notifications(
                records,
                config=self._rules,
                targets=self.targets,
                log=self._log,
                silences=silences,
                now_ns=now_ns,
                labels={(d.site, d.device): d.labels for d in fleet.devices},
            )
            # Recorded before it is sent: a crash after this point cannot lose it.
            self._remember(
                self._store.write_notifications([(n, n.status, 0, "") for n in plan.new])
            )
            sent, failed = self._deliver(now_ns)
            duration_ms = (time.perf_counter() - started) * 1000
            self._store.write_rule_evals(
                rule_summary(self._states, self._rules.rule_names()), duration_ms
            )
            self._influxdb_back(now_ns)
            return CycleReport(
                len(result.events), len(plan.new), sent, failed, duration_ms, store_ok=True
            )
        except StoreUnavailableError as exc:
            # A slow query (timeout) on a busy InfluxDB that still answers its ping is not an
            # outage: log it, try again next cycle, page nobody.
            if self._store.ping():
                logger.warning("evaluation cycle failed, InfluxDB answers its ping: %s", exc)
            else:
                logger.warning("InfluxDB unavailable: %s", exc)
                self._influxdb_down(now_ns, str(exc))
            duration_ms = (time.perf_counter() - started) * 1000
            return CycleReport(0, 0, 0, 0, duration_ms, store_ok=False)

    def _remember(self, records: list[LogRecord]) -> None:
        merged = fold_log(records)
        for key, entry in merged.items():
            current = self._log.get(key)
            if current is None:
                self._log[key] = entry
            else:
                self._log[key] = replace(
                    current,
                    status=entry.status,
                    attempts=max(current.attempts, entry.attempts),
                    last_attempt_ns=entry.last_attempt_ns or current.last_attempt_ns,
                    error=entry.error,
                )

    def _deliver(self, now_ns: int) -> tuple[int, int]:
        """Send what is due, a batch of raises as one message; (sent, failed) notifications."""
        sent = failed = 0
        down: set[tuple[str, int]] = set()
        due = due_for_delivery(
            self._log,
            now_ns,
            retry_base_s=self._policy.retry_base_s,
            retry_max_s=self._policy.retry_max_s,
        )
        for message in merge_batches(due):
            target = (message.receiver, message.target)
            if target in down:
                continue  # one failure per target and cycle: a dead receiver does not stall
            first = message.members[0]
            if (now_ns - first.created_ns) / NS_PER_SECOND > self._policy.give_up_s:
                self._remember(
                    self._store.write_notifications(
                        [
                            (n, STATUS_ABANDONED, n.attempts, "given up: receiver down too long")
                            for n in message.members
                        ]
                    )
                )
                logger.error("notification %s to %s abandoned", message.key, message.receiver)
                continue
            outcome = self._send(message)
            status = STATUS_SENT if outcome.ok else STATUS_FAILED
            self._remember(
                self._store.write_notifications(
                    [(n, status, n.attempts + 1, outcome.error) for n in message.members]
                )
            )
            if outcome.ok:
                sent += len(message.members)
                logger.info(
                    "notification %s (%s, %d alert(s)) sent to %s",
                    message.key,
                    message.kind,
                    len(message.members),
                    message.receiver,
                )
            else:
                failed += len(message.members)
                down.add(target)
                logger.warning(
                    "notification %s to %s failed (attempt %d): %s",
                    message.key,
                    message.receiver,
                    first.attempts + 1,
                    outcome.error,
                )
        return sent, failed

    def _send(self, message: Message) -> Outcome:
        urls = self._urls.get(message.receiver, ())
        if message.target >= len(urls):
            return Outcome(False, f"receiver {message.receiver} has no URL #{message.target} now")
        return self._sender.send(
            urls[message.target],
            key=message.key,
            title=message.title,
            body=message.body,
            resolved=message.kind == KIND_RESOLVED,
        )

    def _direct(self, key: str, title: str, body: str, *, resolved: bool) -> None:
        for i, url in enumerate(self._urls.get(DEFAULT_RECEIVER, ())):
            outcome = self._sender.send(
                url, key=f"{key}-{i}", title=title, body=body, resolved=resolved
            )
            if not outcome.ok:
                logger.error("direct notification %s failed: %s", key, outcome.error)

    def _influxdb_down(self, now_ns: int, why: str) -> None:
        if self._influx_down_since_ns is not None:
            return
        self._influx_down_since_ns = now_ns
        self._direct(
            f"ew-{TYPE_INFLUXDB_DOWN}-{now_ns}",
            f"[CRITICAL] {TYPE_INFLUXDB_DOWN} on {SYSTEM_SITE}",
            f"InfluxDB at {self._store.config.url} is unreachable; alerts cannot be recorded "
            f"until it is back.\n{why}",
            resolved=False,
        )

    def _influxdb_back(self, now_ns: int) -> None:
        since = self._influx_down_since_ns
        if since is None:
            return
        self._influx_down_since_ns = None
        self._direct(
            f"ew-{TYPE_INFLUXDB_DOWN}-{since}-resolved",
            f"[RESOLVED] {TYPE_INFLUXDB_DOWN} on {SYSTEM_SITE}",
            f"InfluxDB at {self._store.config.url} answers again "
            f"(down {(now_ns - since) / NS_PER_SECOND:.0f} s).",
            resolved=True,
        )


def run_forever(alerter: Alerter, interval_s: float, stop: threading.Event) -> None:
    """Evaluate every `interval_s` until `stop` is set; never dies of one bad cycle."""
    logger.info("alerter running: rules every %.1f s", interval_s)
    while not stop.is_set():
        started = time.monotonic()
        try:
            report = alerter.cycle()
            logger.debug("cycle: %s", report)
        except Exception:
            # A long-running service never crashes on input: log it and try again next cycle.
            logger.exception("evaluation cycle failed")
        stop.wait(max(0.0, interval_s - (time.monotonic() - started)))
    logger.info("alerter stopped")
