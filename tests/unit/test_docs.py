"""The README is the user's reference: it must name every setting and every command."""

from __future__ import annotations

from pathlib import Path

from edgewatch.cli import build_parser
from edgewatch.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_lists_every_setting() -> None:
    missing = [f.alias for f in Settings.model_fields.values() if f"`{f.alias}`" not in README]
    assert missing == []


def test_readme_names_every_command() -> None:
    parser = build_parser()
    commands = next(
        a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"
    ).choices
    missing = [name for name in commands if f"`{name}" not in README]
    assert missing == []
