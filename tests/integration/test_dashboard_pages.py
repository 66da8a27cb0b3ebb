"""Every dashboard page against a real InfluxDB seeded with a fleet whose truth we know.

Each scenario has buckets of its own (see dashboard_seed), so the ingest tests sharing the
session's InfluxDB cannot change the fleet-wide counts asserted here.
"""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient
from streamlit.testing.v1 import AppTest

from dashboard import data
from dashboard.auth import UserStore
from dashboard.identity import SESSION_SINCE_KEY, SESSION_USER_KEY
from dashboard.ranges import MAX_POINTS_PER_SERIES, Source, plan_for, preset_range
from stack.processes import free_port
from stack.testing import InfluxFixture
from tests.integration.app_support import signed_in_app
from tests.integration.dashboard_seed import (
    DashboardDB,
    FleetTruth,
    make_dashboard_db,
    seed_fleet,
    seed_rollups,
)

pytestmark = pytest.mark.integration

PAGES = (
    "app_pages/fleet.py",
    "app_pages/alerts.py",
    "app_pages/trends.py",
    "app_pages/device.py",
    "app_pages/ingest.py",
    "app_pages/models.py",
    "app_pages/rules.py",
)
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def seeded(influxdb: InfluxFixture) -> tuple[DashboardDB, FleetTruth]:
    db = make_dashboard_db(influxdb.url, influxdb.org, influxdb.admin_token)
    return db, seed_fleet(db)


@pytest.fixture
def fresh_seeded(influxdb: InfluxFixture) -> tuple[DashboardDB, FleetTruth]:
    """A fleet of this test's own, for tests that change alerts."""
    db = make_dashboard_db(influxdb.url, influxdb.org, influxdb.admin_token)
    return db, seed_fleet(db)


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("users") / "users.json"
    store = UserStore(path)
    store.add("test-operator", "operator-password", "operator")
    store.add("test-viewer", "viewer-password", "viewer")
    return path


@pytest.fixture(autouse=True)
def _accounts(monkeypatch: pytest.MonkeyPatch, users_file: Path) -> None:
    monkeypatch.setenv("EDGEWATCH_USERS_FILE", str(users_file))
    monkeypatch.delenv("EDGEWATCH_AUTH", raising=False)


def open_app(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *, user: str | None = "test-operator"
) -> AppTest:
    """The app with `user` signed in (as after the sign-in form), or nobody (None)."""
    return signed_in_app(monkeypatch, env, user, timeout_s=TIMEOUT_S)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def table_of(at: AppTest, *columns: str) -> pd.DataFrame:
    """The first table on the page that has these columns (display tables carry no key)."""
    for frame in at.dataframe:
        value = frame.value
        if all(c in value.columns for c in columns):
            return value
    raise AssertionError(f"no table with columns {columns}")


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_fleet_overview_counts_equal_the_seeded_truth(
    monkeypatch: pytest.MonkeyPatch, seeded: tuple[DashboardDB, FleetTruth]
) -> None:
    db, truth = seeded
    at = open_app(monkeypatch, db.env()).run()
    assert_clean(at)
    shown = metrics(at)
    assert shown["Sites"] == "3"
    assert shown["Devices"] == "7"
    assert shown["Online"] == str(truth.count("ONLINE")) == "3"
    assert shown["Stale"] == str(truth.count("STALE")) == "2"
    assert shown["Offline"] == str(truth.count("OFFLINE")) == "2"
    assert shown["Unknown"] == "0"
    assert shown["Open"] == str(sum(truth.open_by_severity.values()))
    for severity, count in truth.open_by_severity.items():
        assert shown[severity.title()] == str(count)

    sites = table_of(at, "site", "state", "devices").set_index("site")
    assert sites["state"].to_dict() == truth.site_states
    devices = table_of(at, "device", "state", "reason")
    # The devices table shows each state as one coloured badge (a one-item list).
    states = {(r.site, r.device): "".join(r.state) for r in devices.itertuples()}
    assert states == truth.states
    assert at.get("plotly_chart") != []  # health, severity and the site map


def test_alerts_page_acknowledge_then_resolve_is_stored_and_shown(
    monkeypatch: pytest.MonkeyPatch, fresh_seeded: tuple[DashboardDB, FleetTruth]
) -> None:
    db, truth = fresh_seeded
    at = open_app(monkeypatch, db.env()).switch_page("app_pages/alerts.py").run()
    assert_clean(at)
    target = next(a for a in truth.open_alert_ids if "/camera_fail/" in a)

    at.selectbox(key="alerts_pick").set_value(target)
    at.text_input(key="alerts_note").input("fan replaced, watching")
    at.selectbox(key="alerts_snooze").set_value("1 h")
    at.button(key="alerts_ack").click().run()
    assert_clean(at)
    assert any("Acknowledged 1 alert" in s.value for s in at.success)
    table = table_of(at, "severity", "acknowledged_by", "closed_by")
    row = table[(table["device"] == "cam-2") & (table["type"] == "camera_fail")].iloc[0]
    assert row["state"] == "acknowledged"
    assert row["acknowledged_by"] == "test-operator"

    stored = db.query(
        "from(bucket: _b) |> range(start: -1h)"
        ' |> filter(fn: (r) => r._measurement == "alert_action")'
        ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
        _b=db.bucket_ops,
    )
    assert len(stored) == 1
    assert stored[0]["alert_id"] == target
    assert stored[0]["action"] == "ack"
    assert stored[0]["user"] == "test-operator"
    assert stored[0]["note"] == "fan replaced, watching"
    assert stored[0]["snooze_until_ns"] > time.time_ns() + 3000 * 1_000_000_000

    # Resolved alerts leave the default filter (active + acknowledged): show them all.
    at.multiselect(key="alerts_f_state").set_value([])
    at.selectbox(key="alerts_pick").set_value(target)
    at.text_input(key="alerts_note").input("root cause fixed")
    at.button(key="alerts_resolve").click().run()
    assert_clean(at)
    table = table_of(at, "severity", "acknowledged_by", "closed_by")
    row = table[(table["device"] == "cam-2") & (table["type"] == "camera_fail")].iloc[0]
    assert row["state"] == "resolved"
    assert row["closed_by"] == "test-operator"
    history = table_of(at, "what", "by", "note")
    assert list(history["what"]) == ["raised", "acknowledged (snoozed)", "resolved"]
    assert list(history["note"])[-1] == "root cause fixed"

    # The overview counts the alert as closed.
    at.switch_page("app_pages/fleet.py").run()
    assert metrics(at)["Major"] == "0"


def test_bulk_acknowledge_acts_on_every_active_alert_shown(
    monkeypatch: pytest.MonkeyPatch, fresh_seeded: tuple[DashboardDB, FleetTruth]
) -> None:
    db, truth = fresh_seeded
    at = open_app(monkeypatch, db.env()).switch_page("app_pages/alerts.py").run()
    at.multiselect(key="alerts_f_severity").set_value(["critical"]).run()
    at.button(key="alerts_bulk_ack").click().run()
    assert_clean(at)
    table = table_of(at, "severity", "acknowledged_by", "closed_by")
    assert set(table["state"]) == {"acknowledged"}
    assert len(table) == truth.open_by_severity["critical"]


def test_a_silent_ingest_makes_the_fleet_unknown_and_says_so(
    monkeypatch: pytest.MonkeyPatch, influxdb: InfluxFixture
) -> None:
    db = make_dashboard_db(influxdb.url, influxdb.org, influxdb.admin_token)
    seed_fleet(db, heartbeat=False)
    at = open_app(monkeypatch, db.env()).run()
    assert not at.exception
    assert any("Fleet state UNKNOWN" in e.value for e in at.error)
    shown = metrics(at)
    assert shown["Unknown"] == "7"
    assert shown["Online"] == "0"


def test_every_page_is_useful_with_no_data(
    monkeypatch: pytest.MonkeyPatch, influxdb: InfluxFixture
) -> None:
    db = make_dashboard_db(influxdb.url, influxdb.org, influxdb.admin_token)
    at = open_app(monkeypatch, db.env()).run()
    for page in PAGES:
        at.switch_page(page).run()
        assert_clean(at)
        assert at.info or at.success, f"{page} says nothing when there is no data"


def test_every_page_says_what_to_do_when_influxdb_is_down(
    monkeypatch: pytest.MonkeyPatch, seeded: tuple[DashboardDB, FleetTruth]
) -> None:
    db, _ = seeded
    url = f"http://127.0.0.1:{free_port()}"
    at = open_app(monkeypatch, db.env(INFLUXDB_V2_URL=url)).run()
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, page
        errors = " ".join(e.value for e in at.error)
        assert f"InfluxDB at {url} cannot be reached" in errors, page
        assert "edgewatch stack up" in errors, page


def test_trends_view_comes_from_the_query_string(
    monkeypatch: pytest.MonkeyPatch, seeded: tuple[DashboardDB, FleetTruth]
) -> None:
    db, _ = seeded
    at = open_app(monkeypatch, db.env()).run()
    at.switch_page("app_pages/trends.py")
    at.query_params.update(
        devices="dt-berlin/cam-1,dt-berlin/cam-2", metric="inference_ms", range="24h"
    )
    at.run()
    assert_clean(at)
    assert at.multiselect(key="trends_devices").value == ["dt-berlin/cam-1", "dt-berlin/cam-2"]
    assert at.selectbox(key="trends_metric").value == "inference_ms"
    assert at.selectbox(key="trends_range").value == "24 h"
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    lines = [t for t in spec["data"] if not t["name"].startswith("alert ")]
    names = [t["name"] for t in lines if t.get("showlegend", True) is not False]
    assert names == ["dt-berlin/cam-1", "dt-berlin/cam-2"]
    assert all(t["connectgaps"] is False for t in lines)
    # dt-berlin/cam-1's overheat alert, raised 30 min ago, is marked on the chart.
    marks = [t for t in spec["data"] if t["name"] == "alert raised"]
    assert [row[:3] for row in marks[0]["customdata"]] == [["dt-berlin", "cam-1", "overheat"]]
    assert at.get("download_button"), "CSV export is offered"
    assert at.query_params["metric"] == "inference_ms"
    assert at.query_params["range"] == "24h"


def test_trends_refuses_names_outside_the_allow_list(
    monkeypatch: pytest.MonkeyPatch, seeded: tuple[DashboardDB, FleetTruth]
) -> None:
    db, _ = seeded
    at = open_app(monkeypatch, db.env()).run()
    at.switch_page("app_pages/trends.py")
    at.query_params.update(devices='dt-berlin/cam-1") or true or ("', metric="x) |> drop(")
    at.run()
    assert not at.exception
    # The refused names are dropped: the page opens as with none named (the devices with
    # open alerts), and never on the injected text.
    chosen = at.multiselect(key="trends_devices").value
    assert chosen and all('"' not in key for key in chosen)
    assert at.selectbox(key="trends_metric").value != "x) |> drop("


def test_device_page_opens_from_query_params(
    monkeypatch: pytest.MonkeyPatch, seeded: tuple[DashboardDB, FleetTruth]
) -> None:
    db, _ = seeded
    at = open_app(monkeypatch, db.env()).run()
    at.switch_page("app_pages/device.py")
    at.query_params.update(site="dt-munich", device="cam-2")
    at.run()
    assert_clean(at)
    text = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "OFFLINE" in text
    assert "last will" in text
    shown = metrics(at)
    assert shown["Model"] == "yolo-v8n"
    assert shown["Firmware"] == "2.1.0"
    alerts = table_of(at, "type", "severity", "count")
    assert list(alerts["type"]) == ["camera_fail"]
    history = table_of(at, "time", "state", "reason")
    assert list(history["state"]) == ["offline", "online"]


def test_ingest_page_shows_rates_rejects_and_dead_letters(
    monkeypatch: pytest.MonkeyPatch, seeded: tuple[DashboardDB, FleetTruth]
) -> None:
    db, truth = seeded
    at = open_app(monkeypatch, db.env()).switch_page("app_pages/ingest.py").run()
    assert_clean(at)
    assert metrics(at)["Dead letters"] == str(sum(truth.dead_letters_by_code.values()))
    letters = table_of(at, "code", "topic", "payload")
    assert sorted(letters["code"]) == ["json", "json", "schema"]
    assert "payload is not JSON" in set(letters["reason"])
    # rates, latency, queue, lag, journal fill, rejects by code
    assert len(at.get("plotly_chart")) == 6


@pytest.fixture(scope="module")
def rollups(influxdb: InfluxFixture) -> tuple[DashboardDB, list[tuple[str, str]]]:
    db = make_dashboard_db(influxdb.url, influxdb.org, influxdb.admin_token)
    return db, seed_rollups(db, devices=20, days=90)


def test_ninety_days_of_twenty_devices_reads_hourly_rollups_with_bounded_points(
    rollups: tuple[DashboardDB, list[tuple[str, str]]],
) -> None:
    db, keys = rollups
    connection = data.Connection(
        url=db.url, org=db.org, token=db.token, bucket=db.bucket, bucket_1m=db.bucket_1m,
        bucket_1h=db.bucket_1h, bucket_ops=db.bucket_ops, timeout_s=30.0, ingest_interval_s=5.0,
    )  # fmt: skip
    time_range = preset_range("90 d", datetime.now(UTC))
    plan = plan_for(time_range)
    assert plan.source == Source.ROLLUP_1H
    with InfluxDBClient(url=db.url, token=db.token, org=db.org, timeout=30_000) as client:
        store = data.FleetStore(client=client, connection=connection)
        assert store.metric_names(keys, datetime.now(UTC)) == ["cpu_temp_c"]
        series = store.series(keys, "cpu_temp_c", time_range, plan)
    per_device = series.groupby(["site", "device"]).size()
    assert len(per_device) == 20
    assert per_device.max() <= MAX_POINTS_PER_SERIES
    assert per_device.min() >= 500  # 90 days are there, just not 2,160 points of them
    # Spikes survive the re-windowing: the band's top is the max of the hourly maxes.
    assert series["max"].max() == pytest.approx(50.0 + 23 + 8.0)


def test_ninety_day_trend_page_figure_is_bounded(
    monkeypatch: pytest.MonkeyPatch, rollups: tuple[DashboardDB, list[tuple[str, str]]]
) -> None:
    db, keys = rollups
    at = open_app(monkeypatch, db.env()).run()
    at.switch_page("app_pages/trends.py")
    at.query_params.update(
        devices=",".join(f"{s}/{d}" for s, d in keys), metric="cpu_temp_c", range="90d"
    )
    at.run(timeout=120)
    assert_clean(at)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert len(spec["data"]) == 3 * 20  # band (2 traces) and mean line per device
    for trace in spec["data"]:
        real = [y for y in trace["y"] if y is not None]
        assert 500 <= len(real) <= MAX_POINTS_PER_SERIES
    assert any("1-hour rollups" in c.value for c in at.caption)


def test_a_custom_range_link_reopens_the_same_view(
    monkeypatch: pytest.MonkeyPatch, seeded: tuple[DashboardDB, FleetTruth]
) -> None:
    db, _ = seeded
    today = datetime.now(UTC).date()
    at = open_app(monkeypatch, db.env()).run()
    at.switch_page("app_pages/trends.py")
    at.query_params.update(
        devices="dt-munich/cam-1",
        metric="cpu_temp_c",
        range="custom",
        start=f"{today - timedelta(days=2)}T00:00:00+00:00",
        stop=f"{today}T00:00:00+00:00",
    )
    at.run()
    assert_clean(at)
    assert not at.warning, [w.value for w in at.warning]
    assert at.selectbox(key="trends_range").value == "custom"
    # Whole days: the range runs to the end of the last day picked, capped at now.
    assert at.query_params["start"].startswith(str(today - timedelta(days=2)))
    assert any("1-minute rollups" in c.value for c in at.caption)


def test_sign_in_is_required_and_records_the_signed_in_user(
    monkeypatch: pytest.MonkeyPatch, seeded: tuple[DashboardDB, FleetTruth]
) -> None:
    db, _ = seeded
    at = open_app(monkeypatch, db.env(), user=None).run()
    assert not at.metric  # nothing of the fleet before sign-in
    at.text_input(key="login_user").input("test-operator")
    at.text_input(key="login_password").input("wrong-password")
    at.button(key="login_submit").click().run()
    assert any("Wrong user name or password" in e.value for e in at.error)
    assert not at.metric
    at.text_input(key="login_password").input("operator-password")
    at.button(key="login_submit").click().run()
    assert_clean(at)
    assert metrics(at)["Devices"] == "7"
    assert at.session_state[SESSION_USER_KEY] == "test-operator"


def test_an_expired_session_asks_to_sign_in_again(
    monkeypatch: pytest.MonkeyPatch, seeded: tuple[DashboardDB, FleetTruth]
) -> None:
    db, _ = seeded
    monkeypatch.setenv("EDGEWATCH_SESSION_MAX_AGE_SECONDS", "60")
    at = open_app(monkeypatch, db.env())
    at.session_state[SESSION_SINCE_KEY] = time.time_ns() - 61 * 1_000_000_000
    at.run()
    assert not at.metric
    assert any("session expired" in i.value for i in at.info)


def test_without_accounts_the_page_says_how_to_make_one(
    monkeypatch: pytest.MonkeyPatch, seeded: tuple[DashboardDB, FleetTruth], tmp_path: Path
) -> None:
    db, _ = seeded
    monkeypatch.setenv("EDGEWATCH_USERS_FILE", str(tmp_path / "none.json"))
    at = open_app(monkeypatch, db.env(), user=None).run()
    assert any("edgewatch users add" in w.value for w in at.warning)


def test_a_viewer_sees_alerts_but_no_review_controls(
    monkeypatch: pytest.MonkeyPatch, seeded: tuple[DashboardDB, FleetTruth]
) -> None:
    db, _ = seeded
    at = open_app(monkeypatch, db.env(), user="test-viewer")
    at.switch_page("app_pages/alerts.py").run()
    assert_clean(at)
    keys = {b.key for b in at.button}
    assert not keys & {"alerts_ack", "alerts_resolve", "alerts_comment", "alerts_bulk_ack"}
    assert table_of(at, "severity", "acknowledged_by", "closed_by").shape[0] > 0


def test_an_operator_puts_a_device_in_maintenance_and_the_overview_says_so(
    monkeypatch: pytest.MonkeyPatch, fresh_seeded: tuple[DashboardDB, FleetTruth]
) -> None:
    db, truth = fresh_seeded
    site, device = next(key for key, state in truth.states.items() if state == "OFFLINE")
    at = open_app(monkeypatch, db.env()).switch_page("app_pages/rules.py").run()
    assert_clean(at)
    at.radio(key="rules_kind").set_value("maintenance")
    at.text_input(key="rules_site").set_value(site)
    at.text_input(key="rules_device").set_value(device)
    at.text_area(key="rules_reason").set_value("replacing the camera")
    next(b for b in at.button if b.label == "Create").click().run()
    assert_clean(at)
    windows = table_of(at, "kind", "active", "by", "why")
    assert list(windows[windows["why"] == "replacing the camera"]["by"]) == ["test-operator"]

    at.switch_page("app_pages/fleet.py").run()
    devices = table_of(at, "device", "state", "reason")
    # The devices table shows each state as one coloured badge (a one-item list).
    states = {(r.site, r.device): "".join(r.state) for r in devices.itertuples()}
    assert states[(site, device)] == "MAINTENANCE"

    # Ended early, with why: OFFLINE again (and other tests see the fleet as seeded).
    at.switch_page("app_pages/rules.py").run()
    at.text_input(key="rules_expire_why").set_value("done")
    next(b for b in at.button if b.label == "End now").click().run()
    assert_clean(at)
    at.switch_page("app_pages/fleet.py").run()
    devices = table_of(at, "device", "state", "reason")
    assert {(r.site, r.device): r.state for r in devices.itertuples()}[(site, device)] == "OFFLINE"


def test_a_viewer_sees_silences_but_cannot_create_them(
    monkeypatch: pytest.MonkeyPatch, seeded: tuple[DashboardDB, FleetTruth]
) -> None:
    db, _ = seeded
    at = open_app(monkeypatch, db.env(), user="test-viewer").switch_page("app_pages/rules.py")
    at.run()
    assert_clean(at)
    assert not [b for b in at.button if b.label == "Create"]
    assert any("only operators" in i.value for i in at.info)


def test_the_audit_trail_exports_every_kind_of_operator_action(
    monkeypatch: pytest.MonkeyPatch, fresh_seeded: tuple[DashboardDB, FleetTruth]
) -> None:
    db, truth = fresh_seeded
    at = open_app(monkeypatch, db.env()).switch_page("app_pages/alerts.py").run()
    target = next(a for a in truth.open_alert_ids if "/camera_fail/" in a)
    at.selectbox(key="alerts_pick").set_value(target)
    at.text_input(key="alerts_note").input("=cmd() looked at it")
    at.button(key="alerts_ack").click().run()
    # Another kind of action, as another page would store it: read the same, generically.
    now_ns = time.time_ns()
    db.write(
        [
            'device_action,site=dt-berlin,device=cam-3 action="retire",user="ana",'
            f'note="replaced by cam-4",reason="hardware" {now_ns}'
        ],
        bucket=db.bucket_ops,
    )
    at.button(key="alerts_audit_prepare").click().run()
    assert_clean(at)
    csv_bytes, _, rows = at.session_state["alerts_audit_csv"]
    trail = pd.read_csv(io.BytesIO(csv_bytes))
    assert rows == 2
    assert list(trail.columns) == ["time", "who", "what", "action", "subject", "note", "details"]
    review, retire = trail.iloc[0], trail.iloc[1]
    assert (review["who"], review["what"], review["action"]) == ("test-operator", "alert", "ack")
    assert review["subject"] == "dt-munich cam-2 camera_fail"
    assert review["note"] == "'=cmd() looked at it"  # a spreadsheet shows it, never runs it
    assert target in review["details"]
    assert (retire["who"], retire["what"], retire["action"]) == ("ana", "device", "retire")
    assert retire["note"] == "replaced by cam-4" and retire["details"] == "reason=hardware"


def test_device_and_trends_open_on_what_matters_with_nothing_named(
    monkeypatch: pytest.MonkeyPatch, seeded: tuple[DashboardDB, FleetTruth]
) -> None:
    db, _ = seeded
    at = open_app(monkeypatch, db.env()).run()
    at.switch_page("app_pages/device.py").run()
    assert_clean(at)
    # Two open critical alerts; dt-hamburg/cam-2's has been open longest.
    assert (at.query_params["site"], at.query_params["device"]) == ("dt-hamburg", "cam-2")
    figures = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    names = {t["name"] for figure in figures for t in figure["data"]}
    assert {"dt-hamburg/cam-2", "alert raised"} <= names

    at.switch_page("app_pages/trends.py").run()
    assert_clean(at)
    chosen = at.multiselect(key="trends_devices").value
    assert chosen[:2] == ["dt-berlin/cam-1", "dt-hamburg/cam-2"]  # the critical ones first
    assert at.selectbox(key="trends_metric").value == "cpu_temp_c"  # overheat -> temperature
    assert at.selectbox(key="trends_range").value == "24 h"
    assert at.query_params["metric"] == "cpu_temp_c"
