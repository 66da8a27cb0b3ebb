"""What must outlive raw retention does, and health orders by the ingest's clock.

On real Mosquitto and influxd: the ingest writes status, alert events and last-seen to the
state bucket (with its least-privilege token); a device last seen 45 days ago and an alert
raised 45 days ago and acknowledged since are still there, with raw retention at its
default; a retired device leaves the fleet until reinstated.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient
from streamlit.testing.v1 import AppTest

from dashboard import data
from dashboard.auth import UserStore
from dashboard.ranges import TimeRange
from edgewatch.alerts import alert_id
from edgewatch.health import DeviceHealth, HealthState
from edgewatch.models import AlertEvent, DeviceMessage, Reading, StatusEvent, Telemetry
from edgewatch.schema import (
    alert_action_line,
    ingest_stats_line,
    state_lines,
    telemetry_lines,
)
from edgewatch.settings import Settings
from stack.bootstrap import RAW_RETENTION_SECONDS
from stack.processes import MosquittoProcess
from stack.testing import InfluxFixture
from tests.integration.app_support import signed_in_app
from tests.integration.dashboard_seed import DashboardDB, make_dashboard_db
from tests.integration.ingest_support import Publisher, ThreadedIngest, query, wait_until

pytestmark = pytest.mark.integration

NS = 1_000_000_000
DAY_NS = 86400 * NS
SITE = "old-plant"
SettingsFactory = Callable[..., Settings]


@dataclass(frozen=True)
class OldFleet:
    alert_id: str
    gone_seen_ns: int


@pytest.fixture(autouse=True)
def _accounts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    store = UserStore(path)
    store.add("test-operator", "operator-password", "operator")
    store.add("test-viewer", "viewer-password", "viewer")
    monkeypatch.setenv("EDGEWATCH_USERS_FILE", str(path))
    monkeypatch.delenv("EDGEWATCH_AUTH", raising=False)


def open_app(
    monkeypatch: pytest.MonkeyPatch, db: DashboardDB, user: str = "test-operator"
) -> AppTest:
    return signed_in_app(monkeypatch, db.env(), user)


def connection_of(db: DashboardDB) -> data.Connection:
    return data.Connection(
        url=db.url, org=db.org, token=db.token, bucket=db.bucket, bucket_1m=db.bucket_1m,
        bucket_1h=db.bucket_1h, bucket_ops=db.bucket_ops, timeout_s=30.0, ingest_interval_s=5.0,
        bucket_state=db.bucket_state,
    )  # fmt: skip


def device_table(at: AppTest) -> pd.DataFrame:
    for frame in at.dataframe:
        if {"device", "state", "reason"} <= set(frame.value.columns):
            return frame.value
    raise AssertionError("no device table")


def health_of(settings: Settings, influxdb: InfluxFixture, site: str) -> DeviceHealth:
    """The one device of `site` as the fleet overview sees it, once the ingest's heartbeat
    (its first self-metrics report) is stored."""
    connection = data.Connection.from_settings(settings)
    found: list[DeviceHealth] = []

    def reported() -> bool:
        with InfluxDBClient(url=influxdb.url, token=influxdb.admin_token, org=influxdb.org) as c:
            view = data.FleetStore(client=c, connection=connection).fleet(time.time_ns())
        found[:] = [h for h in view.health if h.site == site]
        return len(found) == 1 and found[0].state != HealthState.UNKNOWN

    wait_until(reported, 30, "the ingest's heartbeat")
    return found[0]


def seed_old_fleet(db: DashboardDB, now: int) -> OldFleet:
    """Where the design keeps them: the state bucket (as the ingest writes it) and ops.

    - old-plant/cam-gone: born 46 days ago, last reading 45 days ago.
    - old-plant/cam-slow: a 5-minute reporter whose birth is 31 days old, reporting still.
    - an overheat on cam-gone raised 45 days ago (repeated since), acknowledged 44 days ago.
    """
    gone_seen = now - 45 * DAY_NS
    born = StatusEvent(
        site=SITE, device="cam-gone", ts_ns=gone_seen - DAY_NS, state="online",
        interval_s=60.0, model="yolo-v5s", model_version="5.0.1", firmware="1.9.3",
        lat=52.5, lon=13.4,
    )  # fmt: skip
    slow = StatusEvent(
        site=SITE, device="cam-slow", ts_ns=now - 31 * DAY_NS, state="online",
        interval_s=300.0, model="yolo-v8s",
    )  # fmt: skip
    messages: list[tuple[int, DeviceMessage]] = [(born.ts_ns, born), (slow.ts_ns, slow)]
    for k in range(3):
        ts = gone_seen - k * 60 * NS
        reading = Telemetry(SITE, "cam-gone", (Reading(ts_ns=ts, metrics={"cpu_temp_c": 60.0}),))
        messages.append((ts, reading))
    for k in range(3):
        ts = now - (60 + 300 * k) * NS
        reading = Telemetry(SITE, "cam-slow", (Reading(ts_ns=ts, metrics={"cpu_temp_c": 50.0}),))
        messages.append((ts, reading))
    opened = now - 45 * DAY_NS
    for k, at in enumerate((opened, opened + 10 * DAY_NS, opened + 30 * DAY_NS)):
        raise_event = AlertEvent(
            site=SITE, device="cam-gone", ts_ns=at, type="overheat", severity="critical",
            message=f"GPU at {90 + k} C", value=90.0 + k,
        )  # fmt: skip
        messages.append((at, raise_event))
    lines = [
        text
        for received, message in sorted(messages, key=lambda m: m[0])
        for text in state_lines(message, received, writer="ingest-1")
    ]
    db.write(lines, bucket=db.bucket_state)
    aid = alert_id(SITE, "cam-gone", "overheat", opened)
    db.write(
        [
            alert_action_line(
                site=SITE,
                device="cam-gone",
                alert_type="overheat",
                alert_id=aid,
                action="ack",
                user="ana",
                note="site closed, crew informed",
                snooze_until_ns=0,
                ts_ns=opened + DAY_NS,
            )
        ],
        bucket=db.bucket_ops,
    )
    # A fresh ingest heartbeat, so the fleet is not UNKNOWN.
    stats = {"received": 1, "interval_s": 600.0}
    db.write([ingest_stats_line("ingest-1", stats, now - 5 * NS)])
    return OldFleet(alert_id=aid, gone_seen_ns=gone_seen)


@pytest.fixture
def old_fleet(influxdb: InfluxFixture) -> tuple[DashboardDB, OldFleet]:
    db = make_dashboard_db(
        influxdb.url, influxdb.org, influxdb.admin_token, raw_retention_s=RAW_RETENTION_SECONDS
    )
    return db, seed_old_fleet(db, time.time_ns())


def test_raw_retention_is_at_its_default_and_cannot_hold_45_days(
    old_fleet: tuple[DashboardDB, OldFleet],
) -> None:
    db, seeded = old_fleet
    buckets = db.query(
        'import "influxdata/influxdb/schema"\nbuckets() |> filter(fn: (r) => r.name == _b)',
        _b=db.bucket,
    )
    assert buckets[0]["retentionPeriod"] == RAW_RETENTION_SECONDS * NS
    reading = Reading(ts_ns=seeded.gone_seen_ns, metrics={"cpu_temp_c": 60.0})
    try:
        db.write(list(telemetry_lines(Telemetry(SITE, "cam-gone", (reading,)))))
    except Exception as exc:  # InfluxDB refuses points beyond the bucket's retention
        assert "retention" in str(exc)
    assert (
        db.query(
            'from(bucket: _b) |> range(start: 0) |> filter(fn: (r) => r.device == "cam-gone")',
            _b=db.bucket,
        )
        == []
    )


def test_a_device_and_an_alert_from_45_days_ago_are_still_there(
    monkeypatch: pytest.MonkeyPatch, old_fleet: tuple[DashboardDB, OldFleet]
) -> None:
    db, seeded = old_fleet
    now_ns = time.time_ns()
    now = datetime.now(UTC)
    with InfluxDBClient(url=db.url, token=db.token, org=db.org, timeout=30_000) as client:
        store = data.FleetStore(client=client, connection=connection_of(db))
        view = store.fleet(now_ns)
        records = store.alert_records(TimeRange(now - timedelta(days=30), now))
    health = {h.device: h for h in view.health}
    assert health["cam-gone"].state == "OFFLINE"
    assert health["cam-gone"].last_seen_ns == seeded.gone_seen_ns
    assert view.info[(SITE, "cam-gone")].model == "yolo-v5s"
    assert health["cam-slow"].state == "ONLINE", health["cam-slow"].reason
    assert "5 min" in health["cam-slow"].reason
    (alert,) = records
    assert alert.alert_id == seeded.alert_id
    assert alert.is_open and alert.count == 3
    assert alert.acknowledged_by == "ana"

    # The same on the pages: the fleet overview and the alerts page.
    at = open_app(monkeypatch, db).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    devices = device_table(at).set_index("device")
    assert devices.loc["cam-gone", "state"] == "OFFLINE"
    assert devices.loc["cam-gone", "model"] == "yolo-v5s"
    last_seen = devices.loc["cam-gone", "last_seen"]
    assert last_seen == pd.Timestamp(seeded.gone_seen_ns, unit="ns", tz="UTC")
    assert devices.loc["cam-slow", "state"] == "ONLINE"
    at.switch_page("app_pages/alerts.py").run()
    assert not at.exception
    at.selectbox(key="alerts_pick").set_value(seeded.alert_id).run()
    history = next(f.value for f in at.dataframe if {"what", "by", "note"} <= set(f.value.columns))
    assert list(history["what"]) == ["raised", "acknowledged"]
    assert list(history["by"]) == ["device", "ana"]
    print(
        "\n45 days on:",
        f"cam-gone {devices.loc['cam-gone', 'state']!s} model {devices.loc['cam-gone', 'model']!s}"
        f" last seen {pd.Timestamp(seeded.gone_seen_ns, unit='ns', tz='UTC'):%Y-%m-%d %H:%M} UTC;",
        f"cam-slow {devices.loc['cam-slow', 'state']} ({health['cam-slow'].reason});",
        f"alert {alert.alert_id} {alert.state_at(now_ns)} by {alert.acknowledged_by},",
        f"history {list(history['what'])}",
    )


def test_an_operator_retires_a_gone_device_and_can_reinstate_it(
    monkeypatch: pytest.MonkeyPatch, old_fleet: tuple[DashboardDB, OldFleet]
) -> None:
    db, _ = old_fleet
    viewer = open_app(monkeypatch, db, user="test-viewer").switch_page("app_pages/device.py")
    viewer.query_params.update(site=SITE, device="cam-gone")
    viewer.run()
    assert not viewer.exception
    assert "device_retire" not in {b.key for b in viewer.button}

    at = open_app(monkeypatch, db).switch_page("app_pages/device.py")
    at.query_params.update(site=SITE, device="cam-gone")
    at.run()
    at.text_input(key="device_retire_note").input("site decommissioned")
    at.button(key="device_retire").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Retired old-plant/cam-gone" in s.value for s in at.success)
    stored = db.query(
        "from(bucket: _b) |> range(start: 0)"
        ' |> filter(fn: (r) => r._measurement == "device_action")'
        ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
        _b=db.bucket_ops,
    )
    assert [(r["action"], r["user"], r["note"]) for r in stored] == [
        ("retire", "test-operator", "site decommissioned")
    ]

    at.switch_page("app_pages/fleet.py").run()
    assert list(device_table(at)["device"]) == ["cam-slow"]
    assert {m.label: m.value for m in at.metric}["Devices"] == "1"
    at.toggle(key="fleet_show_retired").set_value(True).run()
    shown = device_table(at).set_index("device")
    assert bool(shown.loc["cam-gone", "retired"]) and shown.loc["cam-gone", "state"] == "OFFLINE"

    at.switch_page("app_pages/device.py")
    at.query_params.update(site=SITE, device="cam-gone")
    at.run()
    at.button(key="device_retire").click().run()  # now "Reinstate"
    assert any("Reinstated" in s.value for s in at.success)
    at.switch_page("app_pages/fleet.py").run()
    at.toggle(key="fleet_show_retired").set_value(False).run()
    assert sorted(device_table(at)["device"]) == ["cam-gone", "cam-slow"]


def test_the_ingest_keeps_state_by_its_own_clock(
    broker: MosquittoProcess, influxdb: InfluxFixture, make_settings: SettingsFactory
) -> None:
    """A device clock 2 minutes behind reconnects (will, birth, readings): ONLINE, and the
    ingest wrote status, alert and last-seen to the state bucket with its own token."""
    settings = make_settings(broker, influxdb, ingest_stats_interval_seconds=1.0)
    root = settings.mqtt_topic_root
    site = f"s-{root}"
    behind_ns = 120 * NS

    def device_now_s() -> float:
        return (time.time_ns() - behind_ns) / NS

    def status(body: dict[str, object]) -> None:
        pub.publish(f"{root}/{site}/cam/status", json.dumps(body).encode(), retain=True)

    def reading(value: float) -> None:
        body = {"ts": device_now_s(), "metrics": {"cpu_temp_c": value}}
        pub.publish(f"{root}/{site}/cam/telemetry", json.dumps(body).encode())

    with ThreadedIngest(settings), Publisher(broker.host, broker.port, f"pub-{root}") as pub:
        status({"state": "online", "ts": device_now_s(), "interval_s": 10, "model": "m1"})
        reading(50.0)
        pub.publish(
            f"{root}/{site}/cam/alert",
            json.dumps({"ts": device_now_s(), "type": "overheat", "severity": "major"}).encode(),
        )
        pub.wait_all()
        time.sleep(0.05)  # receipt order: the will comes after what the device sent before
        status({"state": "offline", "reason": "lwt"})  # as the broker publishes the will
        pub.wait_all()
        time.sleep(0.05)
        status({"state": "online", "ts": device_now_s(), "interval_s": 10, "model": "m1"})
        reading(51.0)
        pub.wait_all()

        def state_rows() -> list[dict[str, Any]]:
            return query(
                influxdb,
                "from(bucket: b) |> range(start: 0, stop: 2100-01-01T00:00:00Z)"
                " |> filter(fn: (r) => r.site == s)",
                b=influxdb.bucket_state,
                s=site,
            )

        def settled() -> bool:
            rows = state_rows()
            statuses = [r for r in rows if r["_measurement"] == "device_status"]
            return len({r["_time"] for r in statuses}) == 3 and any(
                r["_measurement"] == "alert_event" for r in rows
            )

        wait_until(settled, 60, "3 statuses and the alert in the state bucket")
        rows = state_rows()
        mine = health_of(settings, influxdb, site)
    assert {r["_measurement"] for r in rows} == {
        "device_status",
        "device_last_seen",
        "device_shadow",
        "alert_event",
    }
    alert_received = [r["_value"] for r in rows if r["_field"] == "received_ns"]
    assert alert_received and all(isinstance(v, int) for v in alert_received)
    assert mine.state == "ONLINE", mine.reason
    assert {r["_value"] for r in rows if r["_field"] == "model"} == {"m1"}


def test_a_backlog_drained_late_keeps_the_will_before_the_readings_after_it(
    broker: MosquittoProcess, influxdb: InfluxFixture, make_settings: SettingsFactory
) -> None:
    """Readings, will, birth, readings held by the broker while the ingest is down: the will
    is stamped when drained, after the device times of the readings that followed it; the
    device must still be ONLINE."""
    settings = make_settings(broker, influxdb, ingest_stats_interval_seconds=1.0)
    root = settings.mqtt_topic_root
    site = f"s-{root}"
    with ThreadedIngest(settings):
        pass  # the ingest's persistent session now exists: the broker keeps what follows
    with Publisher(broker.host, broker.port, f"pub-{root}") as pub:

        def send(kind: str, body: dict[str, object]) -> None:
            pub.publish(f"{root}/{site}/cam/{kind}", json.dumps(body).encode())

        now_s = time.time()
        send("telemetry", {"ts": now_s - 4, "metrics": {"v": 1.0}})
        send("status", {"state": "offline", "reason": "lwt"})
        send("status", {"state": "online", "ts": now_s - 3, "interval_s": 30, "model": "m2"})
        send("telemetry", {"ts": now_s - 2, "metrics": {"v": 2.0}})
        send("telemetry", {"ts": now_s - 1, "metrics": {"v": 3.0}})
        pub.wait_all()
    with ThreadedIngest(settings):

        def drained() -> bool:
            rows = query(
                influxdb,
                "from(bucket: b) |> range(start: -1h)"
                ' |> filter(fn: (r) => r.site == s and r._measurement == "telemetry")',
                b=influxdb.bucket,
                s=site,
            )
            statuses = query(
                influxdb,
                "from(bucket: b) |> range(start: -1h)"
                ' |> filter(fn: (r) => r.site == s and r._measurement == "device_status")'
                ' |> filter(fn: (r) => r._field == "state")',
                b=influxdb.bucket_state,
                s=site,
            )
            return len(rows) == 3 and len(statuses) == 2

        wait_until(drained, 60, "the backlog to be stored")
        mine = health_of(settings, influxdb, site)
    assert mine.state == "ONLINE", mine.reason


def test_rebuild_shadow_brings_back_a_fleet_stored_before_the_shadow(
    influxdb: InfluxFixture,
) -> None:
    """An upgrade: the state bucket has the history (statuses, last-seen) but no shadow, so
    the overview lists nobody; `edgewatch stack rebuild-shadow` writes it from the history,
    and a second run changes nothing."""
    db = make_dashboard_db(influxdb.url, influxdb.org, influxdb.admin_token)
    seeded = seed_old_fleet(db, time.time_ns())
    with InfluxDBClient(url=db.url, token=influxdb.admin_token, org=db.org) as client:
        client.delete_api().delete(
            "1970-01-01T00:00:00Z",
            "2100-01-01T00:00:00Z",
            '_measurement="device_shadow"',
            bucket=db.bucket_state,
            org=db.org,
        )
    with InfluxDBClient(url=db.url, token=db.token, org=db.org, timeout=30_000) as client:
        store = data.FleetStore(client=client, connection=connection_of(db))
        assert store.fleet(time.time_ns()).health == ()
        environment = {
            **os.environ,
            "INFLUXDB_V2_URL": db.url,
            "INFLUXDB_V2_ORG": db.org,
            "INFLUXDB_V2_TOKEN": influxdb.admin_token,
            "EDGEWATCH_BUCKET_STATE": db.bucket_state,
        }
        command = [sys.executable, "-m", "edgewatch.cli", "stack", "rebuild-shadow"]
        for _ in range(2):
            done = subprocess.run(
                command, env=environment, capture_output=True, text=True, timeout=120, check=False
            )
            assert done.returncode == 0, done.stderr
            assert "device shadow written for 2 devices" in done.stderr
            view = store.fleet(time.time_ns())
            health = {h.device: h for h in view.health}
            assert health["cam-gone"].state == "OFFLINE"
            assert health["cam-gone"].last_seen_ns == seeded.gone_seen_ns
            assert view.info[(SITE, "cam-gone")].model == "yolo-v5s"
            assert health["cam-slow"].state == "ONLINE", health["cam-slow"].reason
