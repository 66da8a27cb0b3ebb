"""What Device and Trends open on when the link names nothing."""

from __future__ import annotations

from dashboard.focus import (
    device_most_in_need,
    key_metrics,
    metric_for_alert_type,
    trend_devices,
    trend_metric,
)
from edgewatch.alerts import AlertRecord
from edgewatch.health import DeviceHealth, HealthState

METRICS = ["camera_ok", "cpu_temp_c", "disk_used_pct", "inference_ms"]


def health(site: str, device: str, state: HealthState, since: int | None = 0) -> DeviceHealth:
    return DeviceHealth(site, device, state, "", since, None)


def alert(
    site: str, device: str, kind: str, severity: str, opened: int = 1, closed: int | None = None
) -> AlertRecord:
    return AlertRecord(
        alert_id=f"{site}/{device}/{kind}/{opened}",
        site=site,
        device=device,
        type=kind,
        severity=severity,
        opened_ns=opened,
        last_ns=opened,
        count=1,
        message="",
        last_value=None,
        closed_ns=closed,
    )


FLEET = [
    health("b", "cam-1", HealthState.ONLINE),
    health("a", "cam-2", HealthState.OFFLINE, since=50),
    health("a", "cam-1", HealthState.OFFLINE, since=10),
    health("c", "cam-1", HealthState.ONLINE),
]


def test_device_opens_on_the_open_critical_alert_first() -> None:
    alerts = [
        alert("b", "cam-1", "overheat", "critical", opened=5),
        alert("c", "cam-1", "overheat", "critical", opened=1, closed=2),  # closed: ignored
        alert("a", "cam-2", "low_fps", "major", opened=1),
    ]
    assert device_most_in_need(FLEET, alerts) == ("b", "cam-1")


def test_device_opens_on_the_longest_offline_without_critical_alerts() -> None:
    assert device_most_in_need(FLEET, [alert("c", "cam-1", "x", "major")]) == ("a", "cam-1")


def test_device_opens_on_the_first_when_all_is_well() -> None:
    calm = [health("b", "x", HealthState.ONLINE), health("a", "y", HealthState.STALE)]
    assert device_most_in_need(calm, []) == ("a", "y")
    assert device_most_in_need([], []) is None


def test_trends_opens_on_devices_with_open_alerts_most_severe_first() -> None:
    known = [(h.site, h.device) for h in FLEET]
    alerts = [
        alert("a", "cam-2", "low_fps", "minor"),
        alert("b", "cam-1", "overheat", "critical"),
        alert("b", "cam-1", "disk_full", "warning"),
        alert("zz", "gone", "overheat", "critical"),  # not in the fleet
    ]
    assert trend_devices(known, alerts) == [("b", "cam-1"), ("a", "cam-2")]


def test_trends_opens_on_the_first_site_without_alerts() -> None:
    known = [(h.site, h.device) for h in FLEET]
    assert trend_devices(known, [alert("a", "cam-1", "x", "info", closed=3)]) == [
        ("a", "cam-1"),
        ("a", "cam-2"),
    ]


def test_alert_types_map_to_their_metric() -> None:
    assert metric_for_alert_type("overheat", METRICS) == "cpu_temp_c"
    assert metric_for_alert_type("low_fps", METRICS) == "inference_ms"
    assert metric_for_alert_type("camera_fail", METRICS) == "camera_ok"
    assert metric_for_alert_type("disk_full", METRICS) == "disk_used_pct"
    assert metric_for_alert_type("model_reload", METRICS) is None


def test_trend_metric_follows_the_most_severe_alert_else_the_first_numeric() -> None:
    devices = [("b", "cam-1")]
    alerts = [
        alert("b", "cam-1", "disk_full", "warning"),
        alert("b", "cam-1", "overheat", "critical"),
    ]
    assert trend_metric(devices, alerts, METRICS) == "cpu_temp_c"
    numeric = ["cpu_temp_c", "inference_ms"]
    assert trend_metric(devices, [], METRICS, numeric) == "cpu_temp_c"
    assert trend_metric(devices, [], [], numeric) is None


def test_device_key_metrics_put_the_alerted_ones_first() -> None:
    alerts = [alert("b", "cam-1", "low_fps", "minor")]
    assert key_metrics(METRICS, alerts, limit=3) == ["inference_ms", "camera_ok", "cpu_temp_c"]
