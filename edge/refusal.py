"""edge room: what the agent does when the broker refuses a publish. Pure: touches nothing.

An MQTT v5 broker answers a QoS 1 publish with a PUBACK whose reason code says whether it
took the message. A refusal is either the message's fault (its topic or payload can never be
accepted: sending it again gives the same answer, and keeping it would block the spool behind
it) or not (an account or ACL change, a quota, a busy or failing broker: fixed outside the
message, after which the same bytes are accepted). The agent deletes a message only for the
first kind; for the second it keeps the message and retries with exponential backoff, so
that fixing the account loses nothing.

Codes from the MQTT 5.0 specification, section 3.4.2.1 (PUBACK) and 2.4 (reason codes).
"""

from __future__ import annotations

from enum import StrEnum

SUCCESS_CODES_BELOW = 0x80  # 0x00 Success, 0x10 No matching subscribers: both delivered
RETRY_MIN_DELAY_SECONDS = 1.0
RETRY_MAX_DELAY_SECONDS = 60.0


class Refusal(StrEnum):
    NONE = "none"  # not a refusal: delete the message, it is delivered
    RETRY = "retry"  # not the message's fault: keep it, retry with backoff
    DROP = "drop"  # the message's fault: delete it, log and count it


# The message's fault: nothing outside the message can make the broker take these bytes on
# this topic.
MESSAGE_FAULT_CODES: dict[int, str] = {
    0x90: "Topic Name invalid",
    0x95: "Packet too large",
    0x99: "Payload format invalid",
}
# Not the message's fault, named so that logs say what happened. Any other failure code is
# treated like these: when in doubt, keep the reading.
RETRYABLE_CODES: dict[int, str] = {
    0x80: "Unspecified error",
    0x83: "Implementation specific error",
    0x87: "Not authorized",
    0x89: "Server busy",
    0x91: "Packet Identifier in use",
    0x97: "Quota exceeded",
}


def classify_puback(code: int, *, ok: bool = True) -> Refusal:
    """What a PUBACK reason code means for the message it acknowledges.

    `ok` False with a success code (a link that reports a failure without a code) is a
    refusal of unknown cause: retried.
    """
    if code < SUCCESS_CODES_BELOW:
        return Refusal.NONE if ok else Refusal.RETRY
    if code in MESSAGE_FAULT_CODES:
        return Refusal.DROP
    return Refusal.RETRY


def retry_delay_seconds(consecutive_refusals: int) -> float:
    """Exponential backoff: 1 s after the first refusal, doubling, at most 60 s."""
    exponent = min(max(consecutive_refusals, 1) - 1, 16)
    return min(RETRY_MAX_DELAY_SECONDS, RETRY_MIN_DELAY_SECONDS * float(2**exponent))


def describe_code(code: int) -> str:
    """`0x87 Not authorized`: the code and its name, for logs."""
    name = MESSAGE_FAULT_CODES.get(code) or RETRYABLE_CODES.get(code) or "unknown reason"
    return f"0x{code:02X} {name}"
