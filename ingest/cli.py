"""ingest room: the `edgewatch ingest` subcommand (also `python -m ingest`).

Touches nothing itself: it reads the settings, sets up logging and runs `IngestService`.
Every knob but the log level comes from the environment (edgewatch/settings.py); to run
several replicas on one shared subscription, give each its own MQTT_CLIENT_ID and
EDGEWATCH_INGEST_INSTANCE and the same MQTT_SHARE_GROUP (docs/ingest.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from edgewatch.settings import load_settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def add_arguments(parser: argparse.ArgumentParser, *, default: str | None = "INFO") -> None:
    parser.add_argument(
        "--log-level",
        # Under `edgewatch`, SUPPRESS keeps the top-level `edgewatch --log-level X` value.
        default=argparse.SUPPRESS if default is None else default,
        type=str.upper,
        choices=LOG_LEVELS,
        help="logging level (default INFO)",
    )


def register(subparsers: Any) -> None:
    """Add the `ingest` subcommand to the `edgewatch` CLI's subparsers."""
    parser = subparsers.add_parser(
        "ingest",
        help="run the MQTT -> InfluxDB ingest",
        description=(
            "Subscribe to the edge contract's topics and store every message in InfluxDB, "
            "acknowledging each only after it is stored. Configured by environment variables "
            "(see docs/ingest.md)."
        ),
    )
    add_arguments(parser, default=None)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the ingest until SIGTERM/SIGINT; 0 on a clean stop, 2 on a configuration error."""
    level = getattr(args, "log_level", "INFO")
    logging.basicConfig(level=level, format=LOG_FORMAT)
    # basicConfig does nothing when `edgewatch` already configured logging; the level still holds.
    logging.getLogger().setLevel(level)
    log = logging.getLogger("ingest")
    # Imported here so `edgewatch --help` does not pay for paho and the HTTP client.
    from ingest.service import IngestService  # noqa: PLC0415

    try:
        settings = load_settings()
        service = IngestService(settings=settings)
    except (RuntimeError, ValueError) as exc:
        log.error("ingest cannot start: %s", exc)
        return 2
    service.install_signal_handlers()
    return service.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest", description=run.__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
