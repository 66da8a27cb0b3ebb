"""The golden contract cases of tests/data/contract, loaded for the unit and integration tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CASES_DIR = Path(__file__).parent / "data" / "contract"
# Messages that once stopped the ingest, or were meant to: extreme values in every field.
POISON_DIR = Path(__file__).parent / "data" / "poison"
CASE_ROOT = "edgewatch"
CASE_RECEIVED_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


@dataclass(frozen=True)
class ContractCase:
    name: str
    topic: str
    payload: bytes
    expected: dict[str, Any]
    # The MQTT v5 content type the case is published with (contract v1.1); None: none.
    content_type: str | None = None

    @property
    def accepted(self) -> bool:
        return "lines" in self.expected

    def flag(self, name: str) -> bool:
        return bool(self.expected.get(name, False))


def load_cases(cases_dir: Path = CASES_DIR) -> list[ContractCase]:
    cases = []
    for case_dir in sorted(p for p in cases_dir.iterdir() if p.is_dir()):
        payload_file = case_dir / "payload.json"
        if not payload_file.exists():
            payload_file = case_dir / "payload.bin"
        content_type_file = case_dir / "content_type"
        cases.append(
            ContractCase(
                name=case_dir.name,
                topic=(case_dir / "topic").read_text().strip(),
                payload=payload_file.read_bytes(),
                expected=json.loads((case_dir / "expected.json").read_text()),
                content_type=(
                    content_type_file.read_text().strip() if content_type_file.exists() else None
                ),
            )
        )
    return cases
