"""edge room: the `edgewatch agent` and `edgewatch simulate` subcommands.

`agent` runs one `EdgeAgent` for a device that pipes its readings in as JSON lines on stdin:
`{"metrics": {...}}` with optional `ts` and `seq`, or `{"alert": {...}}` (the contract's
alert fields). Lines are checked with the contract's own validators, so a line the ingest
would reject is refused here, with the reason on stderr, and skipped. EOF or SIGTERM stops
the agent cleanly (offline status with reason "shutdown"); the spool keeps what the broker
has not acknowledged for the next start.

`simulate` runs the fleet simulator (simulator.py) in real time, or with `--count` as fast as
possible for benchmarks.

Touches: stdin/stderr, the broker and spool files through the agent and simulator.
"""

from __future__ import annotations

import argparse
import logging
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from edge.agent import EdgeAgent
from edge.filters import DeadbandConfig, parse_deadband_spec, parse_rule_spec
from edge.simulator import FleetSimulator, SimConfig
from edge.spool import DEFAULT_MAX_BYTES, DEFAULT_MAX_MESSAGES, Spool, SpoolError
from edge.transport import paho_factory
from edgewatch.contract import (
    ContractError,
    Topic,
    parse_alert,
    parse_json,
    parse_reading,
)
from edgewatch.models import DeviceInfo, MetricValue
from edgewatch.settings import Settings, load_settings

logger = logging.getLogger(__name__)

STDIN_QUEUE_LINES = 1000
LOOP_PERIOD_SECONDS = 0.1
EXIT_OK = 0
EXIT_USAGE = 2


# ---------------------------------------------------------------------------- stdin lines


@dataclass(frozen=True, slots=True)
class ReadingLine:
    metrics: dict[str, MetricValue]
    ts_ns: int | None
    seq: int | None


@dataclass(frozen=True, slots=True)
class AlertLine:
    type: str
    severity: str
    state: str
    message: str
    value: float | None
    ts_ns: int | None


def parse_line(text: str, *, site: str, device: str, now_ns: int) -> ReadingLine | AlertLine:
    """One stdin line to a reading or an alert; `ValueError` with the reason otherwise."""
    try:
        body = parse_json(text.encode("utf-8"))
        if "alert" in body:
            alert = body["alert"]
            if not isinstance(alert, dict) or len(body) != 1:
                raise ValueError('an alert line must be {"alert": {...}} and nothing else')
            event = parse_alert(Topic("", site, device, "alert"), alert, now_ns)
            return AlertLine(
                type=event.type,
                severity=event.severity,
                state=event.state,
                message=event.message,
                value=event.value,
                ts_ns=event.ts_ns if event.ts_given else None,
            )
        if "metrics" not in body:
            raise ValueError('a line must be {"metrics": {...}} or {"alert": {...}}')
        reading = parse_reading(body, "", now_ns)
    except ContractError as exc:
        raise ValueError(exc.reason) from None
    return ReadingLine(
        metrics=dict(reading.metrics),
        ts_ns=reading.ts_ns if reading.ts_given else None,
        seq=reading.seq,
    )


_EOF = object()


def _read_lines(stream: TextIO, out: queue.Queue[object]) -> None:
    # A thread of its own: a blocking readline must not stall acknowledgements and replays.
    for line in stream:
        out.put(line)
    out.put(_EOF)


def run_agent_loop(
    agent: EdgeAgent,
    lines: queue.Queue[object],
    *,
    stop: threading.Event,
    errors: TextIO,
    clock_ns: Callable[[], int] = time.time_ns,
) -> tuple[int, int]:
    """Feed stdin lines to the agent until EOF or `stop`; (accepted, skipped) lines."""
    accepted = skipped = number = 0
    while not stop.is_set():
        try:
            item = lines.get(timeout=LOOP_PERIOD_SECONDS)
        except queue.Empty:
            agent.pump()
            continue
        if item is _EOF:
            break
        number += 1
        text = str(item).strip()
        if not text:
            continue
        try:
            parsed = parse_line(text, site=agent.site, device=agent.device, now_ns=clock_ns())
        except ValueError as exc:
            skipped += 1
            errors.write(f"edgewatch agent: line {number}: {exc}; skipped\n")
            errors.flush()
            continue
        if isinstance(parsed, ReadingLine):
            agent.record(parsed.metrics, ts_ns=parsed.ts_ns, seq=parsed.seq)
        else:
            agent.alert(
                parsed.type,
                parsed.severity,
                state=parsed.state,
                message=parsed.message,
                value=parsed.value,
                ts_ns=parsed.ts_ns,
            )
        accepted += 1
        agent.pump()
    return accepted, skipped


@contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, frame: object) -> None:
        stop()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# ---------------------------------------------------------------------------- commands


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be positive")
    return value


def _deadband(text: str) -> tuple[str, float]:
    try:
        return parse_deadband_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rule(text: str) -> Any:
    try:
        return parse_rule_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value


def _add_link_options(parser: argparse.ArgumentParser) -> None:
    # Defaults from the settings (EDGEWATCH_EDGE_LINGER_SECONDS, EDGEWATCH_EDGE_GZIP), read
    # when the command runs: None here means "not given".
    parser.add_argument(
        "--linger-s",
        type=_non_negative_float,
        help="hold readings up to this long to send them as one batch message (default"
        " EDGEWATCH_EDGE_LINGER_SECONDS, 1; 0 sends each at once; never longer than the"
        " device's interval); alerts are never held",
    )
    parser.add_argument(
        "--gzip",
        action=argparse.BooleanOptionalAction,
        help="gzip telemetry and alerts when that makes them smaller, announced by the MQTT v5"
        " content type application/json+gzip (contract v1.1; default EDGEWATCH_EDGE_GZIP, off)",
    )


def _link_options(args: argparse.Namespace, settings: Settings) -> tuple[float, bool]:
    """(linger in seconds, gzip) from the command line, else from the settings."""
    linger = settings.edge_linger_seconds if args.linger_s is None else args.linger_s
    gzip = settings.edge_gzip if args.gzip is None else args.gzip
    return linger, gzip


def register(subparsers: Any) -> None:
    """Add `agent` and `simulate` to the `edgewatch` CLI."""
    agent = subparsers.add_parser(
        "agent",
        help="run the edge agent for one device (JSON lines on stdin)",
        description=(
            'Publish a device\'s readings per the edge contract. Each stdin line is {"metrics":'
            ' {...}} with optional "ts" and "seq", or {"alert": {...}}. Readings are spooled '
            "on disk and replayed in order after a broker outage or a restart."
        ),
    )
    agent.add_argument("--site", required=True)
    agent.add_argument("--device", required=True)
    agent.add_argument(
        "--interval-s",
        type=_positive_float,
        default=10.0,
        help="the device's telemetry period, announced in its birth (default 10)",
    )
    agent.add_argument("--spool", type=Path, help="spool file (default: state dir)")
    agent.add_argument("--spool-max-messages", type=int, default=DEFAULT_MAX_MESSAGES)
    agent.add_argument(
        "--spool-max-mb", type=_positive_float, default=DEFAULT_MAX_BYTES / 1024 / 1024
    )
    agent.add_argument(
        "--deadband",
        type=_deadband,
        action="append",
        default=[],
        metavar="METRIC=BAND",
        help="send METRIC only when it moved more than BAND (repeatable)",
    )
    agent.add_argument(
        "--heartbeat-s",
        type=_positive_float,
        help="with --deadband: send each metric at least this often (default 2 x interval)",
    )
    agent.add_argument(
        "--alert-rule",
        type=_rule,
        action="append",
        default=[],
        metavar="TYPE:SEVERITY:METRIC>THRESHOLD[/HYSTERESIS]",
        help="local alert rule, e.g. overheat:critical:gpu_temp_c>85/5 (repeatable)",
    )
    _add_link_options(agent)
    agent.add_argument("--model")
    agent.add_argument("--model-version")
    agent.add_argument("--firmware")
    agent.add_argument("--lat", type=float)
    agent.add_argument("--lon", type=float)
    agent.set_defaults(func=run_agent)

    sim = subparsers.add_parser(
        "simulate",
        help="simulate a fleet of edge-AI devices",
        description=(
            "Real-time demo (default: 4 sites x 5 devices every 5 s, with faults that show "
            "ONLINE, STALE and OFFLINE devices and critical alerts within a minute), or with "
            "--count a fixed number of telemetry messages as fast as possible."
        ),
    )
    sim.add_argument("--sites", type=int, default=4)
    sim.add_argument("--devices", type=int, default=5, help="devices per site")
    pace = sim.add_mutually_exclusive_group()
    pace.add_argument(
        "--rate", type=_positive_float, help="readings per device per second (= 1/interval)"
    )
    pace.add_argument("--interval-s", type=_positive_float, help="seconds between readings")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--count", type=int, help="telemetry messages to send as fast as possible")
    sim.add_argument("--duration", type=_positive_float, help="stop after this many seconds")
    sim.add_argument(
        "--fault-rate",
        type=float,
        default=2.0,
        help="random faults per device per hour (default 2)",
    )
    sim.add_argument(
        "--no-demo-script", action="store_true", help="no scripted faults at the start"
    )
    sim.add_argument(
        "--connections",
        choices=["auto", "per-device", "shared"],
        default="auto",
        help="MQTT connection per device (real last wills) or one shared (auto: per device"
        " up to 50 devices)",
    )
    sim.add_argument("--spool-dir", type=Path, help="keep device spools here (default: temp)")
    _add_link_options(sim)
    sim.set_defaults(func=run_simulate)


def run_agent(args: argparse.Namespace) -> int:
    settings = load_settings()
    spool_path: Path = args.spool or (
        settings.state_dir / "edge" / f"{args.site}.{args.device}.sqlite"
    )
    deadband = None
    if args.deadband:
        heartbeat = args.heartbeat_s or 2 * args.interval_s
        deadband = DeadbandConfig(bands=dict(args.deadband), heartbeat_s=heartbeat)
    try:
        spool = Spool(
            spool_path,
            max_messages=args.spool_max_messages,
            max_bytes=int(args.spool_max_mb * 1024 * 1024),
        )
    except SpoolError as exc:
        print(f"edgewatch agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    stop = threading.Event()
    linger, gzip = _link_options(args, settings)
    with spool:
        agent = EdgeAgent(
            site=args.site,
            device=args.device,
            spool=spool,
            transport_factory=paho_factory(settings),
            topic_root=settings.mqtt_topic_root,
            info=DeviceInfo(
                interval_s=args.interval_s,
                model=args.model,
                model_version=args.model_version,
                firmware=args.firmware,
                lat=args.lat,
                lon=args.lon,
            ),
            deadband_config=deadband,
            alert_rules=tuple(args.alert_rule),
            linger_s=linger,
            gzip=gzip,
        )
        lines: queue.Queue[object] = queue.Queue(maxsize=STDIN_QUEUE_LINES)
        reader = threading.Thread(
            target=_read_lines, args=(sys.stdin, lines), name="stdin", daemon=True
        )
        agent.start()
        reader.start()
        try:
            with _stop_on_signals(stop.set):
                accepted, skipped = run_agent_loop(agent, lines, stop=stop, errors=sys.stderr)
        finally:
            agent.stop()
        logger.info(
            "agent %s/%s done: %d lines accepted, %d skipped, %d messages left in the spool",
            args.site,
            args.device,
            accepted,
            skipped,
            spool.depth,
        )
    return EXIT_OK


def run_simulate(args: argparse.Namespace) -> int:
    settings = load_settings()
    interval = 1.0 / args.rate if args.rate else (args.interval_s or 5.0)
    linger, gzip = _link_options(args, settings)
    config = SimConfig(
        sites=args.sites,
        devices_per_site=args.devices,
        interval_s=interval,
        seed=args.seed,
        fault_rate_per_hour=args.fault_rate,
        demo_script=not args.no_demo_script,
        duration_s=args.duration,
        count=args.count,
        connections=args.connections,
        linger_s=linger,
        gzip=gzip,
    )
    temp = None if args.spool_dir else tempfile.mkdtemp(prefix="edgewatch-sim-")
    spool_dir = args.spool_dir or Path(temp or ".")
    try:
        sim = FleetSimulator(
            config=config,
            transport_factory=paho_factory(settings, max_in_flight=100),
            spool_dir=spool_dir,
            topic_root=settings.mqtt_topic_root,
            progress=sys.stderr if config.count is not None else None,
        )
        with _stop_on_signals(sim.stop):
            sim.run()
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    return EXIT_OK
