"""The `edgewatch` console script: one entry point, subcommands registered by the rooms.

Part of the shared core: it only builds the parser and dispatches. Each room contributes its
subcommands through `register(subparsers)` in `<room>/cli.py`, imported lazily so that
`edgewatch --help` does not load Streamlit or paho, and so that a room not written yet is
skipped instead of breaking every other command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Protocol, cast

from pydantic import ValidationError

# Registration order is the order of `edgewatch --help`.
ROOMS = ("stack", "ingest", "rollup", "edge", "dashboard", "alerter", "bench")
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int | None]


class _Room(Protocol):
    def register(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        """Add the room's subcommands; each sets `func` to its handler."""


def add_command_group(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    description: str,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """A command whose actions are subcommands (`edgewatch users add`); alone, it shows help."""
    parser = subparsers.add_parser(name, help=help, description=description)

    def usage(_args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    parser.set_defaults(func=usage)
    return parser.add_subparsers(title="actions", metavar="ACTION")


def _load_room(room: str) -> _Room | None:
    module_name = f"{room}.cli"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only "this room has no CLI yet" is skipped; a missing dependency inside it is a bug.
        if exc.name in (module_name, room):
            return None
        raise
    return cast(_Room, module)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgewatch",
        description="Monitoring for edge-AI fleets: MQTT ingest into InfluxDB and a dashboard.",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level of the edgewatch loggers (default: %(default)s)",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for room in ROOMS:
        module = _load_room(room)
        if module is not None:
            module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler: Handler | None = getattr(args, "func", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args) or 0
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except ValidationError as exc:
        # A setting from the environment is malformed: name the variable and what it got.
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            print(
                f"edgewatch: error: {where}: {error['msg']} (got {error.get('input')!r})",
                file=sys.stderr,
            )
        return EXIT_USAGE
    except (RuntimeError, OSError, ValueError) as exc:
        # Users get the message, never a traceback; --log-level DEBUG shows where it came from.
        logging.getLogger(__name__).debug("command failed", exc_info=True)
        print(f"edgewatch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
