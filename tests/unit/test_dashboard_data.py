"""Data-layer parsing and the write guard, with no InfluxDB: rows in, frames and records out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from influxdb_client.rest import ApiException

from dashboard import frames, store
from dashboard.auth import PermissionDeniedError, User
from edgewatch.alerts import AlertRecord, fold_alerts
from edgewatch.rows import (
    Heartbeat,
    parse_alert_actions,
    parse_alert_events,
    parse_device_actions,
    parse_heartbeat,
    parse_snapshots,
)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
NS = 1_000_000_000


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_snapshots_take_field_wise_last_status_and_newest_telemetry() -> None:
    status = [
        {"site": "s", "device": "d", "_field": "state", "_value": "offline", "_time": at(100)},
        {"site": "s", "device": "d", "_field": "reason", "_value": "lwt", "_time": at(100)},
        {"site": "s", "device": "d", "_field": "model", "_value": "yolo", "_time": at(10)},
        {"site": "s", "device": "d", "_field": "interval_s", "_value": 10.0, "_time": at(10)},
        {"site": "s", "device": "d", "_field": "lat", "_value": 48.1, "_time": at(10)},
    ]
    seen = [
        {"site": "s", "device": "d", "_time": at(90)},
        {"site": "s", "device": "e", "_time": at(5)},
    ]
    snapshots, info = parse_snapshots(status, seen)
    by_key = {(s.site, s.device): s for s in snapshots}
    assert by_key[("s", "d")].status_state == "offline"
    assert by_key[("s", "d")].status_reason == "lwt"
    assert by_key[("s", "d")].interval_s == 10.0
    assert by_key[("s", "d")].last_telemetry_ns == int(at(90).timestamp()) * NS
    assert by_key[("s", "e")].status_state is None  # telemetry only, no status yet
    assert info[("s", "d")].model == "yolo" and info[("s", "d")].lat == 48.1
    assert info[("s", "d")].lon is None


def test_a_reason_from_an_older_status_does_not_explain_a_newer_one() -> None:
    status = [
        {"site": "s", "device": "d", "_field": "state", "_value": "online", "_time": at(200)},
        {"site": "s", "device": "d", "_field": "reason", "_value": "lwt", "_time": at(100)},
    ]
    snapshots, _ = parse_snapshots(status, [])
    assert snapshots[0].status_reason is None


def test_snapshots_from_the_state_bucket_carry_receipt_times() -> None:
    # State bucket: a status is stamped with its receipt time; its own time is ts_ns. The
    # last will received after the birth: its own time is its receipt time.
    birth_ns = int(at(10).timestamp()) * NS
    status = [
        {"site": "s", "device": "d", "_field": "state", "_value": "online", "_time": at(130)},
        {"site": "s", "device": "d", "_field": "ts_ns", "_value": birth_ns, "_time": at(130)},
        {"site": "s", "device": "d", "_field": "interval_s", "_value": 300.0, "_time": at(130)},
        {"site": "s", "device": "d", "_field": "model", "_value": "yolo", "_time": at(130)},
    ]
    seen = [
        {"site": "s", "device": "d", "_field": "received_ns", "_value": 9 * NS, "_time": at(0)},
        {"site": "s", "device": "d", "_field": "reading_ns", "_value": 7 * NS, "_time": at(0)},
    ]
    (snapshot,), info = parse_snapshots(status, seen)
    assert snapshot.status_ns == birth_ns
    assert snapshot.status_received_ns == int(at(130).timestamp()) * NS
    assert snapshot.telemetry_received_ns == 9 * NS
    assert snapshot.last_telemetry_ns == 7 * NS
    assert snapshot.interval_s == 300.0
    assert info[("s", "d")].model == "yolo"


def test_device_actions_parse_and_retired_devices_show_in_the_fleet_frame() -> None:
    from edgewatch.health import DeviceHealth, HealthState  # noqa: PLC0415

    rows = [
        {"site": "s", "device": "d", "action": "retire", "user": "ana", "note": "", "time_ns": 5},
        {"site": "s", "device": "d", "action": None, "time_ns": 6},
    ]
    (action,) = parse_device_actions(rows)
    assert action.action == "retire" and action.ts_ns == 5
    health = DeviceHealth("s", "d", HealthState.OFFLINE, "silent", None, 1)
    view = frames.FleetView(now_ns=10, health=(health,), retired={("s", "d"): action})
    frame = frames.fleet_frame(view)
    assert bool(frame.loc[0, "retired"]) and frame.loc[0, "retired_by"] == "ana"


def test_heartbeat_is_the_newest_report_with_its_interval() -> None:
    rows = [{"_time": at(10), "_value": 5.0}, {"_time": at(20), "_value": 7.0}]
    beat = parse_heartbeat(rows, default_interval_s=5.0)
    assert beat.last_ns == int(at(20).timestamp()) * NS
    assert beat.interval_s == 7.0
    assert parse_heartbeat([], default_interval_s=5.0) == Heartbeat(None, 5.0)


def test_series_rows_become_one_row_per_window_with_mean_min_max() -> None:
    rows: list[dict[str, Any]] = []
    for stat, value in (("mean", 10.0), ("min", 8.0), ("max", 15.0)):
        rows.append({"_time": at(0), "site": "s", "device": "d", "stat": stat, "_value": value})
    rows.append({"_time": at(60), "site": "s", "device": "d", "stat": "mean", "_value": 11.0})
    frame = frames.parse_series(rows)
    assert list(frame.columns) == ["time", "site", "device", "mean", "min", "max"]
    assert frame.iloc[0][["mean", "min", "max"]].tolist() == [10.0, 8.0, 15.0]
    assert frame.iloc[1]["mean"] == 11.0 and pd.isna(frame.iloc[1]["max"])
    assert frames.parse_series([]).empty


def test_alert_events_and_actions_fold_into_records() -> None:
    events = parse_alert_events(
        [
            {"_time": at(0), "site": "s", "device": "d", "type": "overheat",
             "severity": "critical", "state": "raised", "message": "hot", "value": 91.0},
            {"_time": at(30), "site": "s", "device": "d", "type": "overheat",
             "severity": "critical", "state": "raised", "message": "hotter", "value": 95.0},
        ]
    )  # fmt: skip
    alert_id = f"s/d/overheat/{int(at(0).timestamp()) * NS}"
    actions = parse_alert_actions(
        [
            {"_time": at(60), "alert_id": alert_id, "action": "ack", "user": "ann",
             "note": "on it", "snooze_until_ns": 0},
            {"_time": at(61), "alert_id": "", "action": "ack"},  # malformed: skipped
        ]
    )  # fmt: skip
    assert len(actions) == 1
    (record,) = fold_alerts(events, actions)
    frame = frames.alerts_frame([record], int(at(120).timestamp()) * NS)
    assert frame.iloc[0]["state"] == "acknowledged"
    assert frame.iloc[0]["count"] == 2
    assert frame.iloc[0]["acknowledged_by"] == "ann"


def test_counter_rates_survive_a_restart() -> None:
    stats = pd.DataFrame(
        {
            "time": pd.to_datetime([at(0), at(10), at(20)], utc=True),
            "instance": ["i1", "i1", "i1"],
            "received": [100, 200, 50],  # restarted between the 2nd and 3rd report
        }
    )
    rates = frames.counter_rates(stats, ["received"])
    assert rates["received"].tolist() == [10.0, 5.0]


def test_site_rollup_shows_the_worst_state() -> None:
    devices = pd.DataFrame(
        {
            "site": ["a", "a", "b"],
            "device": ["1", "2", "3"],
            "state": ["ONLINE", "STALE", "ONLINE"],
            "lat": [48.0, 48.2, None],
            "lon": [11.0, 11.2, None],
        }
    )
    sites = frames.site_frame(devices).set_index("site")
    assert sites.loc["a", "state"] == "STALE" and sites.loc["b", "state"] == "ONLINE"
    assert sites.loc["a", "lat"] == pytest.approx(48.1)
    assert pd.isna(sites.loc["b", "lat"])


def test_names_are_allow_listed_before_they_reach_a_query() -> None:
    assert frames.check_keys([("site-1", "cam.2")]) == ["site-1/cam.2"]
    with pytest.raises(ValueError):
        frames.check_keys([("site", 'x" or true')])
    with pytest.raises(ValueError):
        frames.check_metric("CPU temp")


def test_unreachable_message_says_what_to_do() -> None:
    msg = store.unreachable_message("http://127.0.0.1:1", ConnectionRefusedError("refused"))
    assert "http://127.0.0.1:1 cannot be reached" in msg and "edgewatch stack up" in msg
    refused = ConnectionRefusedError("HTTPConnectionPool(host='127.0.0.1', port=42401)")
    assert "cannot be reached" in store.unreachable_message("http://127.0.0.1:42401", refused)
    unauthorized = ApiException(status=401, reason="Unauthorized")
    assert "token" in store.unreachable_message("http://x", unauthorized)


class _NoClient:
    def write_api(self, **_: Any) -> Any:
        raise AssertionError("a refused action must not reach InfluxDB")


def _store() -> store.FleetStore:
    connection = frames.Connection(
        url="http://x", org="o", token="t", bucket="b", bucket_1m="b1", bucket_1h="b2",
        bucket_ops="ops", timeout_s=1.0, ingest_interval_s=5.0,
    )  # fmt: skip
    return store.FleetStore(client=_NoClient(), connection=connection)  # type: ignore[arg-type]


RECORD = AlertRecord(
    alert_id="s/d/t/1", site="s", device="d", type="t", severity="major", opened_ns=1,
    last_ns=1, count=1, message="", last_value=None,
)  # fmt: skip


def test_a_viewer_cannot_act_even_past_the_page() -> None:
    with pytest.raises(PermissionDeniedError):
        _store().record_action(user=User("vic", "viewer"), alert=RECORD, action="ack")


def test_unknown_actions_and_long_notes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        _store().record_action(user=User("op", "operator"), alert=RECORD, action="delete")
    with pytest.raises(ValueError, match="limit"):
        _store().record_action(
            user=User("op", "operator"), alert=RECORD, action="comment", note="x" * 5000
        )


def test_device_filter_names_only_parameters_and_passes_values_as_params() -> None:
    keys = [("site-1", "cam.2"), ("site-2", "cam-9"), ("site-1", "cam.2")]
    predicate, params = frames.device_filter(keys)
    assert predicate == "(r.site == _s0 and r.device == _d0) or (r.site == _s1 and r.device == _d1)"
    assert params == {"s0": "site-1", "d0": "cam.2", "s1": "site-2", "d1": "cam-9"}
    for value in params.values():
        assert value not in predicate


def test_device_filter_is_bounded() -> None:
    most = [("site", f"cam-{i}") for i in range(frames.MAX_SERIES_DEVICES)]
    predicate, params = frames.device_filter(most)
    assert predicate.count(" or ") == frames.MAX_SERIES_DEVICES - 1
    assert len(params) == 2 * frames.MAX_SERIES_DEVICES
    with pytest.raises(ValueError, match="at most 20 devices"):
        frames.device_filter([*most, ("site", "one-more")])
    with pytest.raises(ValueError, match="at least one device"):
        frames.device_filter([])


@pytest.mark.parametrize(
    "key",
    [("site", 'x" or true'), ('s") or (r.site != "', "d"), ("site", ""), ("a/b", "d")],
)
def test_device_filter_refuses_names_outside_the_allow_list(key: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="not a valid site/device name"):
        frames.device_filter([("site-1", "cam-1"), key])


def test_series_queries_take_the_device_predicate_and_nothing_else() -> None:
    predicate, _ = frames.device_filter([("site-1", "cam-1")])
    for name in ("series_rollup", "series_raw", "series_raw_bool", "series_raw_last"):
        text = store.render_query(name, predicate)
        assert frames.DEVICES_MARK not in text and "_s0" in text
        with pytest.raises(ValueError, match="needs a device predicate"):
            store.render_query(name)
    with pytest.raises(ValueError, match="takes no device predicate"):
        store.render_query("state_device_status", predicate)


def test_boolean_window_means_give_min_and_max() -> None:
    rows = [
        {"_time": at(0), "site": "s", "device": "d", "_value": 1.0},
        {"_time": at(60), "site": "s", "device": "d", "_value": 0.25},
        {"_time": at(120), "site": "s", "device": "d", "_value": 0.0},
    ]
    frame = frames.parse_series(frames.bool_window_rows(rows))
    assert frame[["mean", "min", "max"]].values.tolist() == [
        [1.0, 1.0, 1.0],
        [0.25, 0.0, 1.0],
        [0.0, 0.0, 0.0],
    ]


def test_series_rows_may_come_one_per_window() -> None:
    rows = [
        {"_time": at(60), "site": "s", "device": "d", "mean": 2.0, "min": 1.0, "max": 3.0},
        {"_time": at(0), "site": "s", "device": "d", "mean": 1.0, "min": None, "max": 1.5},
    ]
    frame = frames.parse_series(rows)
    assert frame["mean"].tolist() == [1.0, 2.0]
    assert pd.isna(frame.iloc[0]["min"]) and frame.iloc[1]["max"] == 3.0
