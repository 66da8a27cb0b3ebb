"""`edgewatch dashboard`: the command it runs and its registration."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from dashboard.auth import UserStore
from dashboard.cli import APP_PATH, dashboard_command, register


def test_the_command_serves_the_app_on_loopback_at_the_port() -> None:
    argv = dashboard_command(8765)
    assert argv[1:4] == ["-m", "streamlit", "run"]
    assert argv[4] == str(APP_PATH) and APP_PATH.name == "streamlit_app.py" and APP_PATH.is_file()
    assert argv[argv.index("--server.port") + 1] == "8765"
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"


def test_register_adds_the_subcommand() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["dashboard", "--port", "9000"])
    assert args.port == 9000 and callable(args.func)


def test_users_sign_out_ends_every_session_of_a_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    users = tmp_path / "users.json"
    monkeypatch.setenv("EDGEWATCH_USERS_FILE", str(users))
    store = UserStore(users)
    store.add("ana", "a-good-password", "operator")
    before = store.generation_of("ana")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["users", "sign-out", "ana"])
    assert args.func(args) == 0
    assert store.generation_of("ana") == (before or 0) + 1
    assert "signed ana out everywhere" in capsys.readouterr().out
    unknown = parser.parse_args(["users", "sign-out", "bob"])
    with pytest.raises(ValueError, match="edgewatch users list"):
        unknown.func(unknown)
