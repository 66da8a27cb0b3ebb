"""Which broker refusals are the message's fault (delete) and which are not (keep, retry)."""

from __future__ import annotations

import pytest

from edge.refusal import Refusal, classify_puback, describe_code, retry_delay_seconds


@pytest.mark.parametrize("code", [0x00, 0x10])
def test_success_codes_are_not_refusals(code: int) -> None:
    assert classify_puback(code) is Refusal.NONE


@pytest.mark.parametrize("code", [0x80, 0x83, 0x87, 0x89, 0x91, 0x97, 0x9F, 0xFF])
def test_refusals_that_are_not_the_message_fault_are_retried(code: int) -> None:
    assert classify_puback(code) is Refusal.RETRY


@pytest.mark.parametrize("code", [0x90, 0x95, 0x99])
def test_refusals_that_are_the_message_fault_are_dropped(code: int) -> None:
    assert classify_puback(code) is Refusal.DROP


def test_backoff_doubles_up_to_a_minute() -> None:
    delays = [retry_delay_seconds(n) for n in range(1, 10)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert retry_delay_seconds(10_000) == 60.0


def test_codes_are_described_for_the_log() -> None:
    assert describe_code(0x87) == "0x87 Not authorized"
    assert describe_code(0x99) == "0x99 Payload format invalid"
    assert describe_code(0xA7) == "0xA7 unknown reason"


def test_a_failure_without_a_code_is_retried() -> None:
    assert classify_puback(0, ok=False) is Refusal.RETRY
