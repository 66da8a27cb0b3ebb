"""Every golden case of tests/data/contract through the decoder and the line protocol."""

from __future__ import annotations

import pytest

from edgewatch.contract import REJECT_CODES, decode_message
from edgewatch.models import Rejected
from edgewatch.schema import message_lines
from tests.contract_cases import (
    CASE_RECEIVED_NS,
    CASE_ROOT,
    POISON_DIR,
    ContractCase,
    load_cases,
)

CASES = load_cases()
POISON = load_cases(POISON_DIR)


@pytest.mark.parametrize(
    "case", CASES + POISON, ids=[c.name for c in CASES] + [f"poison/{c.name}" for c in POISON]
)
def test_golden_case(case: ContractCase) -> None:
    result = decode_message(
        case.topic, case.payload, CASE_RECEIVED_NS, CASE_ROOT, case.content_type
    )
    if case.accepted:
        assert not isinstance(result, Rejected), result
        assert message_lines(result) == case.expected["lines"]
    else:
        assert isinstance(result, Rejected), result
        assert (result.code, result.reason) == (case.expected["code"], case.expected["reason"])
        assert result.topic == case.topic
        assert result.received_ns == CASE_RECEIVED_NS


def test_every_rejection_code_of_the_decoder_has_a_case() -> None:
    codes = {c.expected["code"] for c in CASES if not c.accepted}
    # `storage` is given by the ingest when InfluxDB refuses a message, not by the decoder;
    # `internal` is the decoder's safety net, which no known input reaches.
    assert codes == set(REJECT_CODES) - {"storage", "internal"}


def test_every_kind_has_accepted_cases() -> None:
    kinds = {c.topic.rsplit("/", 1)[1] for c in CASES if c.accepted}
    assert kinds == {"telemetry", "alert", "status"}


def test_poison_cases_cover_every_kind() -> None:
    kinds = {c.topic.rsplit("/", 1)[1] for c in POISON}
    assert kinds == {"telemetry", "alert", "status"}
    assert any('"batch"' in c.payload.decode("utf-8", "replace") for c in POISON)
