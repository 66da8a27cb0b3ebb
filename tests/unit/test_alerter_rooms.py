"""The alerter's room rules, executable: it may import the core and nothing of the rooms
beside it; the dashboard reads what the alerter writes through InfluxDB, never its code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_rooms(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("alerter", {"dashboard", "ingest", "edge", "stack", "bench"}),
        ("dashboard", {"alerter"}),
        ("edgewatch", {"alerter", "dashboard", "ingest", "edge"}),
    ],
)
def test_room_imports(package: str, forbidden: set[str]) -> None:
    found = imported_rooms(package)
    assert {room: found[room] for room in forbidden if room in found} == {}
