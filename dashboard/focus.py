"""dashboard room, pure: what a page opens on when the link names nothing.

The Device page opens on the device most in need, the Trends page on the devices with open
alerts and the metric that explains them. Values in, values out (device health, alert
records, metric names): no Streamlit, no InfluxDB, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from edgewatch.alerts import AlertRecord
from edgewatch.health import DeviceHealth
from edgewatch.models import SEVERITIES

DeviceKey = tuple[str, str]

# Words an alert type is made of, and the words of the metric that shows it. An alert type
# is free text in the contract (`overheat`, `low_fps`, `disk_full`), so the mapping is by
# word: a type's words are looked for in the metric names, then these synonyms.
ALERT_METRIC_WORDS: dict[str, tuple[str, ...]] = {
    "overheat": ("temp",),
    "heat": ("temp",),
    "hot": ("temp",),
    "thermal": ("temp",),
    "temperature": ("temp",),
    "fps": ("fps", "inference", "latency"),
    "slow": ("latency", "inference", "_ms"),
    "latency": ("latency", "_ms"),
    "camera": ("camera",),
    "disk": ("disk", "storage"),
    "storage": ("storage", "disk"),
    "memory": ("mem",),
    "oom": ("mem",),
    "cpu": ("cpu",),
    "gpu": ("gpu",),
    "battery": ("battery", "voltage"),
    "power": ("power", "voltage", "battery"),
    "network": ("rssi", "signal", "net"),
    "signal": ("rssi", "signal"),
}


def _severity_rank(severity: str) -> int:
    """0 for the most severe; unknown severities after the known ones."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def device_most_in_need(
    health: Sequence[DeviceHealth], open_alerts: Sequence[AlertRecord]
) -> DeviceKey | None:
    """The device the Device page opens on: one with an open critical alert (the longest
    open first), else an OFFLINE one (the longest offline first), else the first by name."""
    known = sorted((h.site, h.device) for h in health)
    if not known:
        return None
    critical = sorted(
        (a.opened_ns, a.site, a.device)
        for a in open_alerts
        if a.is_open and a.severity == "critical" and (a.site, a.device) in set(known)
    )
    if critical:
        return critical[0][1], critical[0][2]
    offline = sorted(
        (h.since_ns if h.since_ns is not None else 0, h.site, h.device)
        for h in health
        if str(h.state) == "OFFLINE"
    )
    if offline:
        return offline[0][1], offline[0][2]
    return known[0]


def trend_devices(
    known: Sequence[DeviceKey], open_alerts: Sequence[AlertRecord], limit: int = 20
) -> list[DeviceKey]:
    """The devices Trends opens on: those with open alerts (most severe first), else the
    first site's devices; at most `limit`."""
    known_set = set(known)
    ranked = sorted(
        ((_severity_rank(a.severity), a.site, a.device) for a in open_alerts if a.is_open),
    )
    chosen: list[DeviceKey] = []
    for _, site, device in ranked:
        key = (site, device)
        if key in known_set and key not in chosen:
            chosen.append(key)
    if not chosen and known:
        first_site = min(site for site, _ in known)
        chosen = sorted(key for key in known if key[0] == first_site)
    return chosen[:limit]


def metric_for_alert_type(alert_type: str, metrics: Sequence[str]) -> str | None:
    """The metric that shows an alert of this type, or None when no name matches."""
    words = [w for w in re.split(r"[^a-z0-9]+", alert_type.lower()) if w]
    for word in words:  # the type names the metric itself (`cpu_temp_high` -> `cpu_temp_c`)
        if len(word) >= 3:
            for metric in metrics:
                if word in metric.lower():
                    return metric
    for word in words:
        for hint in ALERT_METRIC_WORDS.get(word, ()):
            for metric in metrics:
                if hint in metric.lower():
                    return metric
    return None


def trend_metric(
    devices: Sequence[DeviceKey],
    open_alerts: Sequence[AlertRecord],
    metrics: Sequence[str],
    numeric: Sequence[str] = (),
) -> str | None:
    """The metric Trends opens on: the one the most severe open alert of these devices is
    about, else the first numeric metric, else the first metric."""
    if not metrics:
        return None
    wanted = set(devices)
    for alert in sorted(
        (a for a in open_alerts if a.is_open and (a.site, a.device) in wanted),
        key=lambda a: (_severity_rank(a.severity), a.opened_ns),
    ):
        metric = metric_for_alert_type(alert.type, metrics)
        if metric is not None:
            return metric
    for metric in metrics:
        if metric in numeric:
            return metric
    return metrics[0]


def key_metrics(metrics: Sequence[str], alerts: Sequence[AlertRecord], limit: int = 4) -> list[str]:
    """The metrics the Device page charts: those its alerts are about first, then the rest
    in name order; at most `limit`."""
    chosen: list[str] = []
    for alert in sorted(alerts, key=lambda a: (_severity_rank(a.severity), -a.last_ns)):
        metric = metric_for_alert_type(alert.type, metrics)
        if metric is not None and metric not in chosen:
            chosen.append(metric)
    chosen.extend(m for m in sorted(metrics) if m not in chosen)
    return chosen[:limit]
