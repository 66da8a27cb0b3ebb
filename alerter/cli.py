"""alerter room: `edgewatch alerter` (the service) and `edgewatch rules check FILE`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from edgewatch.rules import RulesConfig, RulesFileError, parse_rules
from edgewatch.settings import Settings, load_settings

logger = logging.getLogger(__name__)


def load_rules(path: Path | None) -> RulesConfig:
    """The rules file's config, or the built-in defaults when no file is set."""
    if path is None:
        return parse_rules("", "built-in defaults")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesFileError(f"EDGEWATCH_RULES_FILE {path} cannot be read: {exc}") from exc
    return parse_rules(text, str(path))


def build_alerter(settings: Settings):  # type: ignore[no-untyped-def]
    """The service wired from settings: store, sender, rules, receivers (imported lazily)."""
    from alerter.delivery import AppriseSender, receiver_urls  # noqa: PLC0415
    from alerter.service import Alerter, DeliveryPolicy  # noqa: PLC0415
    from alerter.store import AlerterStore, StoreConfig, make_client  # noqa: PLC0415

    rules = load_rules(settings.rules_file)
    urls = receiver_urls(rules, settings)
    config = StoreConfig.from_settings(settings)
    client = make_client(config)
    alerter = Alerter(
        store=AlerterStore(client=client, config=config),
        sender=AppriseSender(timeout_s=settings.notify_timeout_seconds),
        rules=rules,
        urls=urls,
        policy=DeliveryPolicy(
            retry_base_s=settings.notify_retry_base_seconds,
            retry_max_s=settings.notify_retry_max_seconds,
            give_up_s=settings.notify_give_up_seconds,
        ),
    )
    return alerter, client, rules, urls


def cmd_alerter(args: argparse.Namespace) -> int:
    from alerter.service import run_forever  # noqa: PLC0415

    settings = load_settings()
    alerter, client, rules, urls = build_alerter(settings)
    for name, targets in sorted(urls.items()):
        if not targets and name == "default":
            logger.warning(
                "no EDGEWATCH_NOTIFY_URLS: alerts are evaluated and recorded, nobody is notified"
            )
        logger.info("receiver %s: %d URL(s)", name, len(targets))
    logger.info("rules: %s", ", ".join(rules.rule_names()))
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        run_forever(alerter, settings.rules_interval_seconds, stop)
    finally:
        client.close()
    return 0


def cmd_rules_check(args: argparse.Namespace) -> int:
    try:
        config = load_rules(Path(args.file))
    except RulesFileError as exc:
        print(f"edgewatch: error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: OK")
    for name in config.rule_names():
        print(f"  rule {name}")
    for i, route in enumerate(config.effective_routes):
        print(f"  route {i}: -> {', '.join(route.receivers)}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    alerter = subparsers.add_parser(
        "alerter",
        help="evaluate alert rules against InfluxDB and send notifications (a service)",
        description="Evaluates the rules of EDGEWATCH_RULES_FILE (or the built-in defaults) "
        "every EDGEWATCH_RULES_INTERVAL_SECONDS and notifies the receivers.",
    )
    alerter.set_defaults(func=cmd_alerter)
    rules = subparsers.add_parser("rules", help="alert rules: check a rules file")
    rules_sub = rules.add_subparsers(title="rules commands", metavar="COMMAND")
    check = rules_sub.add_parser("check", help="validate a rules file and list what it sets up")
    check.add_argument("file", help="the YAML rules file (see deploy/rules.example.yaml)")
    check.set_defaults(func=cmd_rules_check)
