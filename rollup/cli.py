"""rollup room: the `edgewatch rollup` subcommand.

`edgewatch rollup` runs the service until SIGTERM/SIGINT; `--once` runs one pass (frontier and
dirty hours) and prints what it did; `--backfill-hours N` re-aggregates the last N closed
hours of raw data for every device (an upgrade, or a bucket filled by hand). Touches nothing
itself: reads the settings and runs `rollup.service`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from contextlib import closing
from types import FrameType
from typing import Any

from edgewatch.settings import load_settings

logger = logging.getLogger("rollup")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "rollup",
        help="run the rollup service (1-minute and 1-hour buckets, late data included)",
        description=(
            "Every EDGEWATCH_ROLLUP_INTERVAL_SECONDS: aggregate the newly closed minutes and "
            "hours of raw telemetry into the rollup buckets (mean, min, max, count; booleans "
            "as 0/1), and re-aggregate every device-hour the ingest marked because readings "
            "came late. Its progress is kept in InfluxDB, so a restart loses nothing."
        ),
    )
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    parser.add_argument(
        "--backfill-hours",
        type=int,
        default=0,
        metavar="N",
        help="re-aggregate the last N closed hours for every device, then exit",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Signals first: a SIGTERM while the service is still starting is a clean stop too.
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %d: stopping after the current query", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # Imported here so `edgewatch --help` does not pay for the InfluxDB client.
    from rollup.service import RollupService, RollupStore, make_client  # noqa: PLC0415

    settings = load_settings()
    if args.backfill_hours < 0:
        raise ValueError("--backfill-hours must be 0 or more")
    with (
        make_client(settings) as client,
        closing(RollupStore(client=client, settings=settings)) as store,
    ):
        service = RollupService(store=store, settings=settings, stop_event=stop)
        try:
            if args.backfill_hours:
                started = time.monotonic()
                report = service.backfill_hours(time.time_ns(), args.backfill_hours)
                print(
                    f"backfilled {args.backfill_hours} h: {report.queries} queries in "
                    f"{time.monotonic() - started:.1f} s"
                )
                return 0
            if args.once:
                report = service.run_once()
                print(
                    f"rollup pass: {report.windows['1m']} minute(s), "
                    f"{report.windows['1h']} hour(s), {report.dirty_hours} dirty device-hour(s), "
                    f"{report.queries} queries in {report.seconds:.2f} s"
                )
                return 0
        except Exception as exc:  # the client libraries' errors: said in words, no traceback
            logger.debug("rollup pass failed", exc_info=True)
            raise RuntimeError(
                f"the rollup pass against InfluxDB at {settings.influxdb_url} failed: {exc}; "
                "is it running (`edgewatch stack up`) and is the token one with read access "
                "to the raw bucket and write access to the rollup buckets?"
            ) from None
        service.run_forever()
    return 0
