"""dashboard room: the `edgewatch dashboard` subcommand (runs the Streamlit app).

The lead's `edgewatch/cli.py` calls `register`; the app itself reads its settings from the
environment, which is passed on unchanged.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from dashboard.auth import ROLES, UserStore
from edgewatch.cli import add_command_group
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
    register_users(subparsers)


def _users_add(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise ValueError("the two passwords differ; nothing was changed")
    user = UserStore(settings.users_path).add(args.name, password, args.role)
    print(f"{user.name} ({user.role}) can sign in; accounts in {settings.users_path}")
    return 0


def _users_remove(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not UserStore(settings.users_path).remove(args.name):
        raise ValueError(f"no dashboard user {args.name!r}: see `edgewatch users list`")
    print(f"removed {args.name}; an open session of theirs ends at its next refresh")
    return 0


def _users_sign_out(args: argparse.Namespace) -> int:
    settings = load_settings()
    store = UserStore(settings.users_path)
    if store.generation_of(args.name) is None:
        raise ValueError(f"no dashboard user {args.name!r}: see `edgewatch users list`")
    store.end_sessions(args.name)
    print(f"signed {args.name} out everywhere: every browser of theirs asks to sign in again")
    return 0


def _users_list(args: argparse.Namespace) -> int:
    settings = load_settings()
    for user in UserStore(settings.users_path).users():
        print(f"{user.name:<40} {user.role}")
    return 0


def register_users(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `edgewatch users add|remove|sign-out|list`: the dashboard's local accounts."""
    actions = add_command_group(
        subparsers,
        "users",
        help="dashboard accounts (local login): add, remove, sign-out, list",
        description="Local dashboard accounts with bcrypt-hashed passwords, kept in "
        "EDGEWATCH_USERS_FILE (default: <state dir>/users.json). Roles: viewer reads; "
        "operator also acknowledges, snoozes, resolves and comments.",
    )
    add = actions.add_parser("add", help="create a user, or replace their password and role")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="viewer", help="default: viewer")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add.set_defaults(func=_users_add)
    remove = actions.add_parser("remove", help="delete a user")
    remove.add_argument("name")
    remove.set_defaults(func=_users_remove)
    sign_out = actions.add_parser(
        "sign-out", help="end every session of a user (e.g. a lost laptop), keeping the account"
    )
    sign_out.add_argument("name")
    sign_out.set_defaults(func=_users_sign_out)
    actions.add_parser("list", help="every user and role").set_defaults(func=_users_list)
