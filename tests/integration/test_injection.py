"""Injection attempts through every query input give a clear error or no data, and leave
InfluxDB unchanged: through the pages' links (site, device, metric, range, filters) and
straight through the data layer, against a real InfluxDB seeded with a known fleet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient

from dashboard.auth import UserStore
from dashboard.data import Connection, FleetStore
from dashboard.ranges import QueryPlan, Source, TimeRange
from edgewatch.settings import load_settings
from stack.testing import InfluxFixture
from tests.integration.app_support import signed_in_app
from tests.integration.dashboard_seed import DashboardDB, make_dashboard_db, seed_fleet

pytestmark = pytest.mark.integration

ATTACKS = (
    '") |> drop(columns: ["_value"]) |> yield(name: "x',
    'x" or r.site != "',
    'dt-berlin/cam-1\nimport "sql"',
    "../../etc/passwd",
    "' OR '1'='1",
    "${devices}",
    "a" * 500,
)


@pytest.fixture(scope="module")
def seeded(influxdb: InfluxFixture) -> DashboardDB:
    db = make_dashboard_db(influxdb.url, influxdb.org, influxdb.admin_token)
    seed_fleet(db)
    return db


def _points(db: DashboardDB) -> dict[str, int]:
    """Every point of every bucket of the scenario: the store's state, to compare."""
    counts = {}
    for bucket in (db.bucket, db.bucket_1m, db.bucket_1h, db.bucket_ops):
        rows = db.query("from(bucket: _b) |> range(start: 0) |> group() |> count()", _b=bucket)
        counts[bucket] = int(rows[0]["_value"]) if rows else 0
    return counts


def _store(db: DashboardDB) -> tuple[InfluxDBClient, FleetStore]:
    settings = load_settings(**db.env())
    client = InfluxDBClient(url=db.url, token=db.token, org=db.org)
    return client, FleetStore(client=client, connection=Connection.from_settings(settings))


def test_every_page_input_refuses_injection_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, seeded: DashboardDB, tmp_path: Path
) -> None:
    before = _points(seeded)
    users = tmp_path / "users.json"
    UserStore(users).add("test-operator", "operator-password", "operator")
    for key, value in {**seeded.env(), "EDGEWATCH_USERS_FILE": str(users)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("EDGEWATCH_AUTH", raising=False)
    links = []
    for attack in ATTACKS:
        links += [
            ("app_pages/device.py", {"site": attack, "device": "cam-1"}),
            ("app_pages/device.py", {"site": "dt-berlin", "device": attack}),
            ("app_pages/trends.py", {"devices": attack, "metric": "cpu_temp_c"}),
            ("app_pages/trends.py", {"devices": "dt-berlin/cam-1", "metric": attack}),
            ("app_pages/trends.py", {"devices": "dt-berlin/cam-1", "range": attack}),
            (
                "app_pages/trends.py",
                {"devices": "dt-berlin/cam-1", "range": "custom", "start": attack, "stop": attack},
            ),
        ]
    for page, params in links:
        at = signed_in_app(monkeypatch, {}, "test-operator")
        at.switch_page(page)
        at.query_params.update(params)
        at.run()
        assert not at.exception, (page, params, [e.value for e in at.exception])
    assert _points(seeded) == before


def test_the_data_layer_refuses_injection_with_a_clear_error(seeded: DashboardDB) -> None:
    before = _points(seeded)
    client, store = _store(seeded)
    now = datetime.now(UTC)
    day = TimeRange(now - timedelta(days=1), now)
    plan = QueryPlan(source=Source.RAW, window_seconds=300)
    try:
        for attack in ATTACKS:
            with pytest.raises(ValueError):
                store.series([(attack, "cam-1")], "cpu_temp_c", day, plan)
            with pytest.raises(ValueError):
                store.series([("dt-berlin", attack)], "cpu_temp_c", day, plan)
            with pytest.raises(ValueError):
                store.series([("dt-berlin", "cam-1")], attack, day, plan)
            with pytest.raises(ValueError):
                store.status_history(attack, "cam-1", day)
            with pytest.raises(ValueError):
                store.recent_metrics("dt-berlin", attack, now)
            with pytest.raises(ValueError):
                store.metric_names([(attack, attack)], now)
        with pytest.raises(ValueError):
            TimeRange(now, now - timedelta(days=1))
    finally:
        client.close()
    assert _points(seeded) == before
