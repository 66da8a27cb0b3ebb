"""alerter room, I/O: sending one notification to one Apprise URL, with its idempotency key.

Apprise does the protocols (email, Slack, Teams, Telegram, ntfy, JSON webhooks, ...). The key
rides in every message: in the body for all, as an `X-Edgewatch-Key` header where the URL
scheme takes headers (json://, form://, xml://, mailto://), and as an `idempotency_key` field
of the JSON webhook body. A receiver that keeps the keys it has seen processes each once, even
when a crash between "sent" and "recorded" makes the alerter send it again.

Receiver URLs carry secrets: they are read from the environment (or a secrets file of
KEY=VALUE lines, the environment winning), never logged or stored; the log names the receiver.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import apprise

from edgewatch.rules import DEFAULT_RECEIVER, RulesConfig
from edgewatch.settings import Settings

logger = logging.getLogger(__name__)

KEY_HEADER = "X-Edgewatch-Key"
_HEADER_SCHEMES = frozenset({"json", "jsons", "form", "forms", "xml", "xmls", "mailto", "mailtos"})
_JSON_SCHEMES = frozenset({"json", "jsons"})
NOTIFY_URLS_ENV = "EDGEWATCH_NOTIFY_URLS"


def read_secrets_file(path: Path | None) -> dict[str, str]:
    """KEY=VALUE lines (blank lines and # comments skipped); a clear error if unreadable."""
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuntimeError(f"EDGEWATCH_NOTIFY_URLS_FILE {path} cannot be read: {exc}") from exc
    values = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not sep:
            raise RuntimeError(f"{path}:{number}: expected KEY=VALUE (e.g. {NOTIFY_URLS_ENV}=...)")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def receiver_urls(
    config: RulesConfig, settings: Settings, environ: Mapping[str, str] | None = None
) -> dict[str, tuple[str, ...]]:
    """Each receiver's Apprise URLs: `default` from EDGEWATCH_NOTIFY_URLS, others by urls_env."""
    env = {**read_secrets_file(settings.notify_urls_file), **(environ or os.environ)}
    default = settings.notify_urls.get_secret_value() if settings.notify_urls else None
    sources = {DEFAULT_RECEIVER: default or env.get(NOTIFY_URLS_ENV, "")}
    for receiver in config.receivers:
        sources[receiver.name] = env.get(receiver.urls_env, "")
    result = {}
    for name, text in sources.items():
        urls = tuple(u.strip() for u in text.split(",") if u.strip())
        for url in urls:
            if not _accepted(url):
                raise RuntimeError(
                    f"receiver {name!r}: {scheme_of(url)}:// URL is not one Apprise accepts "
                    "(see https://github.com/caronc/apprise/wiki)"
                )
        result[name] = urls
    return result


def _accepted(url: str) -> bool:
    """Whether Apprise takes the URL; quietly, since its log line would show the URL (secrets)."""
    apprise_log = logging.getLogger("apprise")
    level = apprise_log.level
    apprise_log.setLevel(logging.CRITICAL + 1)
    try:
        return bool(apprise.Apprise().add(url))
    finally:
        apprise_log.setLevel(level)


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme.lower()


def with_key(url: str, key: str) -> str:
    """The URL with the idempotency key added as a header / JSON field where the scheme allows."""
    scheme = scheme_of(url)
    extra = []
    if scheme in _HEADER_SCHEMES:
        extra.append(f"+{KEY_HEADER}={key}")
    if scheme in _JSON_SCHEMES:
        extra.append(f":idempotency_key={key}")
    if not extra:
        return url
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}{'&'.join(extra)}"


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    error: str = ""


class AppriseSender:
    """Sends one message to one URL; never raises (an exception is a failed attempt)."""

    def __init__(self, *, timeout_s: float) -> None:
        self._timeout_s = timeout_s

    def send(self, url: str, *, key: str, title: str, body: str, resolved: bool) -> Outcome:
        notifier = apprise.Apprise()
        if not notifier.add(with_key(url, key)):
            return Outcome(False, f"{scheme_of(url)}:// URL not accepted by Apprise")
        kind = apprise.NotifyType.SUCCESS if resolved else apprise.NotifyType.FAILURE
        try:
            with apprise.LogCapture(level=logging.WARNING) as captured:  # type: ignore[no-untyped-call]
                ok = notifier.notify(
                    body=body, title=title, notify_type=kind, timeout=self._timeout_s
                )
                text = captured.getvalue()
        except Exception as exc:
            return Outcome(False, f"{type(exc).__name__}: {exc}")
        if ok:
            return Outcome(True)
        # Apprise logs why; keep its last line (it names the receiver's answer, not the URL).
        lines = [ln for ln in str(text).splitlines() if ln.strip()]
        return Outcome(False, lines[-1].split(" - ", 2)[-1] if lines else "not delivered")
