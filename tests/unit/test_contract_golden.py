"""Every golden case of tests/data/contract through the decoder and the line protocol."""

from __future__ import annotations

import pytest

from edgewatch.contract import REJECT_CODES, decode_message
from edgewatch.models import Rejected
from edgewatch.schema import message_lines
from tests.contract_cases import CASE_RECEIVED_NS, CASE_ROOT, ContractCase, load_cases

CASES = load_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_case(case: ContractCase) -> None:
    result = decode_message(case.topic, case.payload, CASE_RECEIVED_NS, CASE_ROOT)
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
    # `storage` is given by the ingest when InfluxDB refuses a message, not by the decoder.
    assert codes == set(REJECT_CODES) - {"storage"}


def test_every_kind_has_accepted_cases() -> None:
    kinds = {c.topic.rsplit("/", 1)[1] for c in CASES if c.accepted}
    assert kinds == {"telemetry", "alert", "status"}
