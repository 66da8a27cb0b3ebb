"""dashboard room: the `edgewatch dashboard` subcommand (runs the Streamlit app).

The lead's `edgewatch/cli.py` calls `register`; the app itself reads its settings from the
environment, which is passed on unchanged.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from edgewatch.settings import load_settings

APP_PATH = Path(__file__).resolve().parent / "streamlit_app.py"


def dashboard_command(port: int, address: str = "127.0.0.1") -> list[str]:
    """The argv that serves the dashboard on `address:port`."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_PATH),
        "--server.port",
        str(port),
        "--server.address",
        address,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]


def _run(args: argparse.Namespace) -> int:
    settings = load_settings()
    port = args.port if args.port is not None else settings.dashboard_port
    print(f"edgewatch dashboard on http://127.0.0.1:{port}", flush=True)
    argv = dashboard_command(port)
    # Become Streamlit instead of wrapping it: a signal to this process then reaches the
    # server itself, and no orphaned server outlives a stopped `edgewatch dashboard`.
    os.execve(argv[0], argv, dict(os.environ))  # noqa: S606 - our own argv, no shell
    return 0  # pragma: no cover - execve does not return


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `edgewatch dashboard`."""
    parser = subparsers.add_parser(
        "dashboard",
        help="serve the operator dashboard (Streamlit) on 127.0.0.1",
        description="Serve the operator dashboard on 127.0.0.1:EDGEWATCH_DASHBOARD_PORT.",
    )
    parser.add_argument(
        "--port", type=int, default=None, help="port (default: EDGEWATCH_DASHBOARD_PORT, 8501)"
    )
    parser.set_defaults(func=_run)
