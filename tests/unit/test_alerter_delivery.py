"""The idempotency key rides in the URL's headers/JSON body; receivers from env or secrets file."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerter.delivery import read_secrets_file, receiver_urls, with_key
from edgewatch.rules import parse_rules
from edgewatch.settings import load_settings


def test_key_as_header_and_json_field() -> None:
    url = with_key("json://127.0.0.1:9000/hook", "ew-abc")
    assert "+X-Edgewatch-Key=ew-abc" in url
    assert ":idempotency_key=ew-abc" in url
    assert with_key("mailto://u:p@host?to=a@b", "k").endswith("&+X-Edgewatch-Key=k")
    assert with_key("ntfy://topic", "k") == "ntfy://topic"


def test_receivers_from_environment_and_secrets_file(tmp_path: Path) -> None:
    secrets = tmp_path / "notify.env"
    secrets.write_text(
        "# receivers\nEDGEWATCH_ONCALL_URLS=json://127.0.0.1:1/a,json://127.0.0.1:1/b\n"
    )
    config = parse_rules("receivers: [{name: oncall, urls_env: EDGEWATCH_ONCALL_URLS}]")
    settings = load_settings(notify_urls="json://127.0.0.1:1/default", notify_urls_file=secrets)
    urls = receiver_urls(config, settings, environ={})
    assert len(urls["default"]) == 1
    assert len(urls["oncall"]) == 2


def test_a_bad_url_or_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not one Apprise accepts"):
        receiver_urls(parse_rules(""), load_settings(notify_urls="nosuch://x"), environ={})
    bad = tmp_path / "bad.env"
    bad.write_text("just a url\n")
    with pytest.raises(RuntimeError, match="expected KEY=VALUE"):
        read_secrets_file(bad)
