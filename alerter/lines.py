"""alerter room, pure: the line protocol of what the alerter stores.

Rule alerts are ordinary `alert_event` points in the state bucket (the same event-sourced
model and fields as a device's there) with `source` = "rule" and `rule` more; the alerter's
own state lives in the ops bucket:
`rule_state` (one point per transition of a rule instance), `rule_eval` (one point per rule
and evaluation), `notification` (the delivery log). Schema: docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Mapping

from alerter.evaluate import InstanceKey, InstanceState, RuleAlertEvent
from alerter.notify import Notification
from edgewatch.schema import MEASUREMENT_ALERT, FieldValue, line

MEASUREMENT_RULE_STATE = "rule_state"
MEASUREMENT_RULE_EVAL = "rule_eval"
MEASUREMENT_NOTIFICATION = "notification"
SOURCE_RULE = "rule"
MAX_TEXT_CHARS = 1024


def rule_alert_line(event: RuleAlertEvent, received_ns: int) -> str:
    """A rule alert as the state bucket holds a device's (`schema.state_lines`): the same
    fields, `received_ns` the alerter's clock when it recorded the event (the receipt time
    health and the alert fold compare), plus its source and rule."""
    return line(
        MEASUREMENT_ALERT,
        {"site": event.site, "device": event.device, "type": event.type},
        {
            "severity": event.severity,
            "state": event.state,
            "message": event.message[:MAX_TEXT_CHARS],
            "value": event.value,
            "received_ns": received_ns,
            "source": SOURCE_RULE,
            "rule": event.rule,
        },
        event.ts_ns,
    )


def rule_state_line(key: InstanceKey, state: InstanceState, ts_ns: int) -> str:
    return line(
        MEASUREMENT_RULE_STATE,
        {"rule": key.rule, "site": key.site, "device": key.device},
        {
            "state": state.state.value,
            "since_ns": state.since_ns,
            "last_true_ns": state.last_true_ns,
        },
        ts_ns,
    )


def rule_eval_line(rule: str, counts: Mapping[str, int], duration_ms: float, ts_ns: int) -> str:
    fields: dict[str, FieldValue | None] = {k: int(v) for k, v in counts.items()}
    fields["duration_ms"] = float(duration_ms)
    return line(MEASUREMENT_RULE_EVAL, {"rule": rule}, fields, ts_ns)


def notification_line(
    n: Notification, *, status: str, ts_ns: int, attempt: int = 0, error: str = ""
) -> str:
    """One delivery-log record; the first (pending) carries all a retry needs to resend."""
    fields: dict[str, FieldValue | None] = {
        "key": n.key,
        "alert_id": n.alert_id,
        "status": status,
        "attempt": attempt,
        "kind": n.kind,
        "target": n.target,
        "severity": n.severity,
    }
    if attempt == 0:
        if n.batch:
            fields["batch"] = n.batch
        fields["title"] = n.title[:MAX_TEXT_CHARS]
        fields["body"] = n.body[: 4 * MAX_TEXT_CHARS]
    if error:
        fields["error"] = error[:MAX_TEXT_CHARS]
    return line(
        MEASUREMENT_NOTIFICATION,
        {"site": n.site, "device": n.device, "type": n.type, "receiver": n.receiver},
        fields,
        ts_ns,
    )
