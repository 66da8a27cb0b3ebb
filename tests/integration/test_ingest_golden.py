"""Every golden contract case through Mosquitto and the running ingest into InfluxDB."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from influxdb_client import BucketRetentionRules, InfluxDBClient
from paho.mqtt.client import topic_matches_sub

from edgewatch.settings import Settings
from ingest.mqtt_source import subscription_topics
from stack.processes import MosquittoProcess
from stack.testing import InfluxFixture
from tests.contract_cases import CASE_ROOT, ContractCase, load_cases
from tests.integration.ingest_support import (
    Publisher,
    ThreadedIngest,
    dead_letters,
    query,
    wait_until,
)

pytestmark = pytest.mark.integration

SettingsFactory = Callable[..., Settings]
GOLDEN_BUCKET = "golden"


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, i, quoted = [], "", 0, False
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current += text[i : i + 2]
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    parts.append(current)
    return parts


def _unescape_key(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _field_value(text: str) -> Any:
    if text.startswith('"'):
        return re.sub(r'\\(["\\])', r"\1", text[1:-1])
    if text in ("true", "false"):
        return text == "true"
    if text.endswith("i"):
        return int(text[:-1])
    return float(text)


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, Any], int]:
    """measurement, tags, fields, timestamp of one line of our line protocol."""
    series, fields_text, ts = _split_unescaped(line, " ")
    measurement, *tag_parts = _split_unescaped(series, ",")
    tags = dict(_unescape_key(p).split("=", 1) for p in tag_parts)
    fields = {}
    for part in _split_unescaped(fields_text, ","):
        key, value = _split_unescaped(part, "=")
        fields[_unescape_key(key)] = _field_value(value)
    return measurement, tags, fields, int(ts)


def _deliverable(case: ContractCase) -> bool:
    """Whether the ingest's subscriptions can see the case's topic at all."""
    filters = subscription_topics(CASE_ROOT, None)
    return any(topic_matches_sub(f, case.topic) for f in filters) and not case.flag("unit_only")


def test_every_golden_case_is_stored_exactly_or_dead_lettered(
    broker: MosquittoProcess, fresh_influxdb: InfluxFixture, make_settings: SettingsFactory
) -> None:
    influx = fresh_influxdb
    # The golden timestamps are fixed (2025-12-31): a bucket without retention keeps them.
    with InfluxDBClient(url=influx.url, token=influx.admin_token, org=influx.org) as client:
        client.buckets_api().create_bucket(
            bucket_name=GOLDEN_BUCKET,
            org=influx.org,
            retention_rules=BucketRetentionRules(type="expire", every_seconds=0),
        )
    settings = make_settings(
        broker, influx, influxdb_bucket=GOLDEN_BUCKET, ingest_token=influx.admin_token
    )
    root = settings.mqtt_topic_root
    cases = [c for c in load_cases() if _deliverable(c)]
    assert len(cases) > 40

    def live_topic(case: ContractCase) -> str:
        return root + case.topic[len(CASE_ROOT) :]

    with ThreadedIngest(settings), Publisher(broker.host, broker.port, f"pub-{root}") as pub:
        for case in cases:
            pub.publish(live_topic(case), case.payload, content_type=case.content_type)
        pub.wait_all()
        rejected = [c for c in cases if not c.accepted]
        wait_until(
            lambda: len(dead_letters(influx, GOLDEN_BUCKET, f"{root}/")) >= len(rejected),
            60,
            "the dead letters",
        )
        # One stored row per distinct (series, field, time): cases that write the same point
        # (a seq of one device at one time) overwrite each other, as InfluxDB does.
        # Receipt-time cases get a time of their own at run time, so each of theirs counts.
        expected_keys: set[tuple[Any, ...]] = set()
        for case in (c for c in cases if c.accepted):
            for index, (measurement, tags, fields, ts) in enumerate(
                map(parse_line, case.expected["lines"])
            ):
                when = (case.name, index) if case.flag("receipt_time") else ts
                for name in fields:
                    expected_keys.add((measurement, tuple(sorted(tags.items())), name, when))

        def stored_rows() -> list[dict[str, Any]]:
            return query(
                influx,
                """
                from(bucket: bucket) |> range(start: 0)
                  |> filter(fn: (r) => r._measurement != "dead_letter")
                  |> filter(fn: (r) => r._measurement != "ingest_stats")
                  // Rollup markers depend on when the case was received, not on the case.
                  |> filter(fn: (r) => r._measurement != "rollup_dirty")
                  |> map(fn: (r) => ({r with ns: int(v: r._time)}))
                """,
                bucket=GOLDEN_BUCKET,
            )

        n_fields = len(expected_keys)
        wait_until(lambda: len(stored_rows()) >= n_fields, 60, "the stored points")

    # Stored: exactly the expected fields, tags and (where the device sent ts) timestamps.
    stored: dict[tuple[Any, ...], Any] = {}
    for row in stored_rows():
        key = (
            row["_measurement"],
            row.get("site", ""),
            row.get("device", ""),
            row.get("type") or "",
            row["_field"],
        )
        stored[(*key, row["ns"])] = row["_value"]
        # Without the device's ts the time is the receipt's: match on the value instead.
        stored[(*key, None, repr(row["_value"]))] = row["_value"]
    receipt_cases = {c.name for c in cases if c.flag("receipt_time")}
    for case in (c for c in cases if c.accepted):
        for measurement, tags, fields, ts in map(parse_line, case.expected["lines"]):
            for name, value in fields.items():
                key: tuple[Any, ...] = (
                    measurement,
                    tags["site"],
                    tags["device"],
                    tags.get("type", ""),
                    name,
                )
                key = (*key, None, repr(value)) if case.name in receipt_cases else (*key, ts)
                assert key in stored, f"{case.name}: {key} not stored"
                got = stored[key]
                if value == "" and got is None:
                    continue  # the query client reads an empty string from CSV as null
                assert got == value, f"{case.name}: {name}"
                assert type(got) is type(value), f"{case.name}: {name} type"
    assert len(stored_rows()) == n_fields  # nothing stored that was not expected

    # Rejected: each one dead-lettered once, with its code and reason.
    letters = dead_letters(influx, GOLDEN_BUCKET, f"{root}/")
    assert len(letters) == len(rejected)
    by_topic_reason = {(row["topic"], row["code"], row["reason"]) for row in letters}
    for case in rejected:
        if case.flag("live_reason_varies"):
            assert any(
                t == live_topic(case) and c == case.expected["code"] and "in the future" in r
                for t, c, r in by_topic_reason
            ), case.name
        else:
            # A topic rejection quotes the topic and root, which are this test's own.
            reason = case.expected["reason"].replace(f"{CASE_ROOT}/", f"{root}/")
            reason = reason.replace(f"{CASE_ROOT}'", f"{root}'")
            key = (live_topic(case), case.expected["code"], reason)
            assert key in by_topic_reason, case.name
