"""`edgewatch dashboard`: the command it runs and its registration."""

from __future__ import annotations

import argparse

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
