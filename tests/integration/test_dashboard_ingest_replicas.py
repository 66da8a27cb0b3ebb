"""Ingest health with two replicas, against a real InfluxDB: rates are the sum of both (not
one then the other), and queue depth, lag and journal fill are shown per instance."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient

from dashboard import data
from dashboard.ranges import TimeRange
from edgewatch.schema import ingest_stats_line
from stack.testing import InfluxFixture
from tests.integration.dashboard_seed import DashboardDB, make_dashboard_db
from tests.integration.test_dashboard_pages import (  # noqa: F401 (fixtures)
    _accounts,
    assert_clean,
    metrics,
    open_app,
    table_of,
    users_file,
)

pytestmark = pytest.mark.integration

NS = 1_000_000_000
INTERVAL_S = 5
REPORTS = 120  # ten minutes of reports per instance
# instance: (messages per second, offset of its reports in s, queue depth, lag ms, fill)
REPLICAS = {
    "ingest-a": (100, 0.0, 7, 250.0, 0.12),
    "ingest-b": (300, 2.5, 40, 900.0, 0.85),
}


def _seed_two_replicas(db: DashboardDB) -> int:
    """Two instances reporting every 5 s, out of step by 2.5 s; returns the newest report ns."""
    now = time.time_ns()
    newest = 0
    lines = []
    for instance, (rate, offset_s, queue, lag, fill) in REPLICAS.items():
        for k in range(REPORTS):
            ts = now - int(((REPORTS - 1 - k) * INTERVAL_S + offset_s) * NS)
            newest = max(newest, ts)
            fields: dict[str, float | int] = {
                "received": rate * INTERVAL_S * k,
                "accepted": rate * INTERVAL_S * k,
                "rejected": 0,
                "queue_depth": queue,
                "lag_ms": lag,
                "interval_s": float(INTERVAL_S),
                "journal_bytes": int(fill * 1000),
                "journal_entries": int(fill * 100),
                "journal_max_bytes": 1000,
                "journal_fill": fill,
                "journal_oldest_age_s": 1.0,
            }
            lines.append(ingest_stats_line(instance, fields, ts))
    db.write(lines)
    return newest


@pytest.fixture(scope="module")
def replicas_db(influxdb: InfluxFixture) -> DashboardDB:
    db = make_dashboard_db(influxdb.url, influxdb.org, influxdb.admin_token)
    _seed_two_replicas(db)
    return db


def test_rates_of_two_replicas_are_summed_at_every_time(replicas_db: DashboardDB) -> None:
    db = replicas_db
    connection = data.Connection(
        url=db.url, org=db.org, token=db.token, bucket=db.bucket, bucket_1m=db.bucket_1m,
        bucket_1h=db.bucket_1h, bucket_ops=db.bucket_ops, timeout_s=30.0,
        ingest_interval_s=float(INTERVAL_S),
    )  # fmt: skip
    stop = datetime.now(UTC) + timedelta(seconds=1)
    time_range = TimeRange(start=stop - timedelta(hours=1), stop=stop)
    with InfluxDBClient(url=db.url, token=db.token, org=db.org, timeout=30_000) as client:
        stats = data.FleetStore(client=client, connection=connection).ingest_stats(time_range)
    rates = data.counter_rates(stats, ("received",))
    # The first and last windows may hold one instance only; every other one holds both.
    inner = rates["received"].iloc[1:-1]
    assert len(inner) >= 40
    assert inner.round(3).unique().tolist() == [400.0]

    instances = data.ingest_instances(stats)
    assert list(instances["instance"]) == ["ingest-a", "ingest-b"]
    assert list(instances["queue_depth"]) == [7, 40]
    assert list(instances["lag_ms"]) == [250.0, 900.0]
    assert list(instances["journal_fill"]) == [0.12, 0.85]


def test_ingest_page_shows_each_instance_and_warns_of_a_filling_journal(
    monkeypatch: pytest.MonkeyPatch, replicas_db: DashboardDB
) -> None:
    env = replicas_db.env(EDGEWATCH_STATS_INTERVAL_SECONDS=str(INTERVAL_S))
    at = open_app(monkeypatch, env).switch_page("app_pages/ingest.py").run()
    assert_clean(at)
    shown = metrics(at)
    assert shown["Queue depth"] == "47"
    assert shown["Lag (ms)"] == "900"
    assert shown["Journal fill"] == "85.0%"
    assert any("journal is 85% full" in w.value for w in at.warning)
    table = table_of(at, "instance", "queue_depth", "lag_ms", "journal_fill")
    assert list(table["instance"]) == ["ingest-a", "ingest-b"]
