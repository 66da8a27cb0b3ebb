"""The ingest's second line of defence: a message whose line protocol cannot be built is
dead-lettered with the code `internal`, never raised out of the pipeline."""

from __future__ import annotations

import pytest

from edgewatch.contract import REJECT_INTERNAL
from edgewatch.models import InboundMessage
from ingest.pipeline import to_entry

ROOT = "edgewatch"


def test_a_line_protocol_failure_dead_letters_the_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(message: object, **_options: object) -> list[str]:
        raise OverflowError("int too large to convert to float")

    monkeypatch.setattr("ingest.pipeline.message_lines", broken)
    message = InboundMessage(
        topic=f"{ROOT}/s/d/telemetry",
        payload=b'{"metrics": {"a": 1}}',
        received_ns=1_767_225_600_000_000_000,
        ack_token=7,
    )
    entry = to_entry(message, root=ROOT, instance="ingest-1")
    assert entry.is_dead_letter
    assert entry.code == REJECT_INTERNAL
    assert entry.ack_token == 7
    assert (
        "line protocol failed: OverflowError: int too large to convert to float" in (entry.lines[0])
    )
