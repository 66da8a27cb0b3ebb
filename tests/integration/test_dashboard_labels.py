"""Device groups by label on the dashboard: the shared filter, over effective labels, in the URL.

The seeded fleet (dashboard_seed) gets labels two ways: two devices say `ring=canary` in their
status (contract v1.1), and an operator adds the label to a third and removes it from one of
the two. The group is then exactly the devices whose effective labels carry it.
"""

from __future__ import annotations

import time

import pytest

from edgewatch.models import StatusEvent
from edgewatch.schema import label_action_line
from stack.testing import InfluxFixture
from tests.integration.dashboard_seed import (
    DashboardDB,
    FleetTruth,
    make_dashboard_db,
    seed_fleet,
    state_lines_of,
)
from tests.integration.test_dashboard_pages import (  # the accounts fixtures sign users in
    _accounts,  # noqa: F401
    assert_clean,
    metrics,
    open_app,
    table_of,
    users_file,  # noqa: F401
)

pytestmark = pytest.mark.integration

NS = 1_000_000_000
CANARY = {("dt-berlin", "cam-1"), ("dt-munich", "cam-1")}


@pytest.fixture(scope="module")
def labelled(influxdb: InfluxFixture) -> tuple[DashboardDB, FleetTruth]:
    db = make_dashboard_db(influxdb.url, influxdb.org, influxdb.admin_token)
    truth = seed_fleet(db)
    now = time.time_ns()
    received = []
    for device in ("cam-1", "cam-2"):
        status = StatusEvent(
            site="dt-berlin",
            device=device,
            ts_ns=now - 1800 * NS,
            state="online",
            interval_s=600.0,
            model="yolo-v8n",
            model_version="1.4.2",
            labels=(("hardware", "jetson-orin"), ("ring", "canary")),
        )
        received.append((status.ts_ns, status))
    db.write(state_lines_of(received), bucket=db.bucket_state)  # type: ignore[arg-type]
    actions = [
        ("dt-munich", "cam-1", "set", "canary"),
        ("dt-berlin", "cam-2", "remove", ""),
    ]
    db.write(
        [
            label_action_line(
                site=site,
                device=device,
                key="ring",
                value=value,
                action=action,
                user="test-operator",
                ts_ns=now - (60 - i) * NS,
            )
            for i, (site, device, action, value) in enumerate(actions)
        ],
        bucket=db.bucket_ops,
    )
    return db, truth


def test_the_fleet_page_filtered_by_a_label_shows_only_that_group_and_keeps_it_in_the_url(
    monkeypatch: pytest.MonkeyPatch, labelled: tuple[DashboardDB, FleetTruth]
) -> None:
    db, _ = labelled
    at = open_app(monkeypatch, db.env()).run()
    assert_clean(at)
    chooser = at.multiselect(key="fleet_labels")
    assert "ring=canary" in chooser.options and "hardware=jetson-orin" in chooser.options
    assert metrics(at)["Devices"] == "7"

    chooser.select("ring=canary").run()
    assert_clean(at)
    devices = table_of(at, "site", "device", "state")
    assert set(zip(devices["site"], devices["device"], strict=True)) == CANARY
    assert metrics(at)["Devices"] == "2"
    assert at.query_params["labels"] == "ring=canary"

    # A copied link opens on the same group.
    again = open_app(monkeypatch, db.env())
    again.query_params["labels"] = "ring=canary"
    again.run()
    assert_clean(again)
    assert again.multiselect(key="fleet_labels").value == ["ring=canary"]
    shown = table_of(again, "site", "device", "state")
    assert set(zip(shown["site"], shown["device"], strict=True)) == CANARY


def test_every_device_list_offers_the_label_filter(
    monkeypatch: pytest.MonkeyPatch, labelled: tuple[DashboardDB, FleetTruth]
) -> None:
    db, _ = labelled
    at = open_app(monkeypatch, db.env()).run()
    for page, key in (
        ("app_pages/alerts.py", "alerts_f_labels"),
        ("app_pages/trends.py", "trends_labels"),
        ("app_pages/device.py", "device_labels"),
    ):
        at.switch_page(page)
        at.query_params["labels"] = "ring=canary"
        at.run()
        assert_clean(at)
        assert at.multiselect(key=key).value == ["ring=canary"], page
    # The device picker offers the group (and the device open, if outside it).
    picker = at.selectbox(key="device_pick").options
    assert {"dt-berlin/cam-1", "dt-munich/cam-1"} <= set(picker)
    opened = f"{at.query_params.get('site')}/{at.query_params.get('device')}"
    assert set(picker) - {opened} <= {f"{s}/{d}" for s, d in CANARY}


def test_a_maintenance_window_on_a_label_marks_only_the_devices_carrying_it(
    monkeypatch: pytest.MonkeyPatch, influxdb: InfluxFixture
) -> None:
    db = make_dashboard_db(influxdb.url, influxdb.org, influxdb.admin_token)
    truth = seed_fleet(db)
    offline = sorted(key for key, state in truth.states.items() if state == "OFFLINE")
    labelled, other = offline[0], offline[1]
    db.write(
        [
            label_action_line(
                site=labelled[0], device=labelled[1], key="zone", value="north", action="set",
                user="test-operator", ts_ns=time.time_ns(),
            )
        ],
        bucket=db.bucket_ops,
    )  # fmt: skip
    at = open_app(monkeypatch, db.env()).switch_page("app_pages/rules.py").run()
    assert_clean(at)
    at.radio(key="rules_kind").set_value("maintenance")
    at.text_input(key="rules_labels").set_value("zone=north")
    at.text_area(key="rules_reason").set_value("north wing rewiring")
    next(b for b in at.button if b.label == "Create").click().run()
    assert_clean(at)
    windows = table_of(at, "kind", "labels", "why")
    assert list(windows[windows["why"] == "north wing rewiring"]["labels"]) == ["zone=north"]

    at.switch_page("app_pages/fleet.py").run()
    devices = table_of(at, "device", "state", "reason")
    states = {(r.site, r.device): r.state for r in devices.itertuples()}
    assert states[labelled] == "MAINTENANCE"
    assert states[other] == "OFFLINE"
