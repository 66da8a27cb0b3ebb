"""Helpers of the dashboard tests: buckets of their own, and a fleet with known truth.

The session's InfluxDB is shared with the ingest tests, whose data would change the fleet-wide
counts; so every dashboard scenario gets five buckets and a least-privilege token of its own
(read all five, write only ops: what `edgewatch stack up` gives the dashboard).

Every message is seeded as the ingest stores it: its raw lines, and its state lines (status,
alert events, last-seen) in the state bucket with a receipt time, which here equals the
message's own time (clocks that agree).
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.bucket_retention_rules import BucketRetentionRules
from influxdb_client.domain.permission import Permission
from influxdb_client.domain.permission_resource import PermissionResource
from influxdb_client.domain.write_precision import WritePrecision

from edgewatch.models import (
    AlertEvent,
    DeviceMessage,
    Reading,
    Rejected,
    StatusEvent,
    Telemetry,
)
from edgewatch.schema import (
    alert_line,
    dead_letter_line,
    ingest_stats_line,
    line,
    state_lines,
    status_line,
    telemetry_lines,
)

NS = 1_000_000_000
# The device shadow's writer for seeded state: the ingest instance a stack runs by default.
SEED_WRITER = "ingest-1"


@dataclass(frozen=True)
class DashboardDB:
    """Five buckets of one scenario and the dashboard token for them."""

    url: str
    org: str
    admin_token: str = field(repr=False)
    token: str = field(repr=False)
    bucket: str
    bucket_1m: str
    bucket_1h: str
    bucket_ops: str
    bucket_state: str

    def env(self, **extra: str) -> dict[str, str]:
        """The environment the dashboard reads its settings from."""
        values = {
            "INFLUXDB_V2_URL": self.url,
            "INFLUXDB_V2_ORG": self.org,
            "INFLUXDB_V2_TOKEN": self.token,
            "EDGEWATCH_DASHBOARD_TOKEN": self.token,
            "INFLUXDB_V2_BUCKET": self.bucket,
            "EDGEWATCH_BUCKET_1M": self.bucket_1m,
            "EDGEWATCH_BUCKET_1H": self.bucket_1h,
            "EDGEWATCH_BUCKET_OPS": self.bucket_ops,
            "EDGEWATCH_BUCKET_STATE": self.bucket_state,
            "EDGEWATCH_USER": "test-operator",
        }
        values.update(extra)
        return values

    def write(self, lines: list[str], bucket: str | None = None) -> None:
        with (
            InfluxDBClient(url=self.url, token=self.admin_token, org=self.org) as client,
            client.write_api(write_options=SYNCHRONOUS) as writer,
        ):
            for start in range(0, len(lines), 5000):
                writer.write(
                    bucket=bucket or self.bucket,
                    org=self.org,
                    record=lines[start : start + 5000],
                    write_precision=WritePrecision.NS,
                )

    def query(self, flux: str, **params: Any) -> list[dict[str, Any]]:
        with InfluxDBClient(url=self.url, token=self.admin_token, org=self.org) as client:
            tables = client.query_api().query(flux, org=self.org, params=params)
            return [dict(r.values) for t in tables for r in t.records]


def make_dashboard_db(
    url: str, org: str, admin_token: str, *, raw_retention_s: int = 0
) -> DashboardDB:
    """Five fresh buckets (unique names) and a token that reads them and writes only ops.

    `raw_retention_s` 0 keeps raw data forever (the other buckets always do): tests that
    seed data of any age into raw need that; retention tests give raw its real retention.
    """
    suffix = secrets.token_hex(4)
    names = [
        f"dash_{suffix}",
        f"dash_{suffix}_1m",
        f"dash_{suffix}_1h",
        f"dash_{suffix}_ops",
        f"dash_{suffix}_state",
    ]
    with InfluxDBClient(url=url, token=admin_token, org=org) as client:
        org_id = client.organizations_api().find_organizations(org=org)[0].id
        buckets_api = client.buckets_api()
        ids = []
        for index, name in enumerate(names):
            rules = (
                [BucketRetentionRules(type="expire", every_seconds=raw_retention_s)]
                if index == 0 and raw_retention_s
                else None
            )
            ids.append(
                buckets_api.create_bucket(bucket_name=name, org=org, retention_rules=rules).id
            )
        permissions = [
            Permission(
                action="read", resource=PermissionResource(type="buckets", id=i, org_id=org_id)
            )
            for i in ids
        ]
        permissions.append(
            Permission(
                action="write",
                resource=PermissionResource(type="buckets", id=ids[3], org_id=org_id),
            )
        )
        auth = client.authorizations_api().create_authorization(
            org_id=org_id, permissions=permissions
        )
    return DashboardDB(
        url=url,
        org=org,
        admin_token=admin_token,
        token=auth.token,
        bucket=names[0],
        bucket_1m=names[1],
        bucket_1h=names[2],
        bucket_ops=names[3],
        bucket_state=names[4],
    )


SITES = {
    "dt-berlin": (52.52, 13.40),
    "dt-munich": (48.14, 11.58),
    "dt-hamburg": (53.55, 9.99),
}


@dataclass(frozen=True)
class FleetTruth:
    """What the seeded fleet is, for the tests to compare the pages against."""

    states: dict[tuple[str, str], str]
    site_states: dict[str, str]
    open_by_severity: dict[str, int]
    open_alert_ids: list[str]
    dead_letters_by_code: dict[str, int]

    def count(self, state: str) -> int:
        return sum(1 for s in self.states.values() if s == state)


Received = list[tuple[int, DeviceMessage]]


def state_lines_of(received: Received) -> list[str]:
    """The state bucket's lines for messages received at the given times, in that order
    (a later last-seen of the same hour overwrites an earlier one, as in the ingest)."""
    ordered = sorted(received, key=lambda item: item[0])
    return [
        text for at, message in ordered for text in state_lines(message, at, writer=SEED_WRITER)
    ]


def _telemetry(
    site: str,
    device: str,
    ts_ns: int,
    cpu: float,
    fps: float,
    ok: bool,
    state: Received | None = None,
) -> list[str]:
    """The raw lines the ingest writes for one reading."""
    reading = Reading(
        ts_ns=ts_ns, metrics={"cpu_temp_c": cpu, "inference_ms": fps, "camera_ok": ok}
    )
    message = Telemetry(site=site, device=device, readings=(reading,))
    if state is not None:
        state.append((ts_ns, message))
    return list(telemetry_lines(message))


def _status(
    site: str,
    device: str,
    ts_ns: int,
    state: str,
    interval_s: float,
    received: Received | None = None,
    **kw: Any,
) -> str:
    lat, lon = SITES[site]
    message = StatusEvent(
        site=site,
        device=device,
        ts_ns=ts_ns,
        state=state,  # type: ignore[arg-type]
        interval_s=interval_s,
        model="yolo-v8n",
        model_version="1.4.2",
        firmware="2.1.0",
        lat=lat,
        lon=lon,
        **kw,
    )
    if received is not None:
        received.append((ts_ns, message))
    return status_line(message)


def seed_fleet(db: DashboardDB, *, heartbeat: bool = True) -> FleetTruth:
    """3 sites, 7 devices: 3 ONLINE, 2 STALE, 2 OFFLINE; alerts; ingest stats; dead letters.

    Intervals are chosen so that each device keeps its state for at least 20 minutes after
    seeding, longer than the tests take.
    """
    now = time.time_ns()
    lines: list[str] = []
    received: Received = []
    states: dict[tuple[str, str], str] = {}

    def online(site: str, device: str) -> None:
        # Reports every 600 s: ONLINE while silent under 30 min; an hour of history.
        lines.append(_status(site, device, now - 3600 * NS, "online", 600.0, received))
        offset = 4.0 * len(states)
        for k in range(60):
            ts = now - (20 + 60 * k) * NS
            cpu = 55.0 + offset + 3.0 * math.sin(k / 6)
            lines.extend(_telemetry(site, device, ts, cpu, 20.0 + (k % 5), True, received))
        states[(site, device)] = "ONLINE"

    def stale(site: str, device: str) -> None:
        # Every 300 s, silent for 1500 s: STALE from 900 s to 3000 s of silence.
        lines.append(_status(site, device, now - 7200 * NS, "online", 300.0, received))
        for k in range(10):
            lines.extend(
                _telemetry(site, device, now - (1500 + 300 * k) * NS, 60.0, 25.0, True, received)
            )
        states[(site, device)] = "STALE"

    online("dt-berlin", "cam-1")
    online("dt-berlin", "cam-2")
    stale("dt-berlin", "cam-3")
    online("dt-munich", "cam-1")
    # Last will: OFFLINE, whatever its telemetry says.
    lines.append(_status("dt-munich", "cam-2", now - 7200 * NS, "online", 60.0, received))
    lines.extend(_telemetry("dt-munich", "cam-2", now - 700 * NS, 70.0, 30.0, False, received))
    will = StatusEvent(
        site="dt-munich", device="cam-2", ts_ns=now - 600 * NS, state="offline", reason="lwt"
    )
    lines.append(status_line(will))
    received.append((will.ts_ns, will))
    states[("dt-munich", "cam-2")] = "OFFLINE"
    stale("dt-hamburg", "cam-1")
    # Silent for two hours at a 60 s interval: OFFLINE.
    lines.append(_status("dt-hamburg", "cam-2", now - 9000 * NS, "online", 60.0, received))
    lines.extend(_telemetry("dt-hamburg", "cam-2", now - 7200 * NS, 50.0, 20.0, True, received))
    states[("dt-hamburg", "cam-2")] = "OFFLINE"

    def alert(site: str, device: str, kind: str, severity: str, ago_s: int, **kw: Any) -> int:
        ts = now - ago_s * NS
        event = AlertEvent(
            site=site,
            device=device,
            ts_ns=ts,
            type=kind,
            severity=severity,
            message=kw.pop("message", f"{kind} on {device}"),
            **kw,
        )
        lines.append(alert_line(event))
        received.append((ts, event))
        return ts

    opened = alert("dt-berlin", "cam-1", "overheat", "critical", 1800, value=91.0)
    alert("dt-berlin", "cam-1", "overheat", "critical", 900, value=93.0)
    open_ids = [f"dt-berlin/cam-1/overheat/{opened}"]
    open_ids.append(
        f"dt-hamburg/cam-2/overheat/{alert('dt-hamburg', 'cam-2', 'overheat', 'critical', 7000)}"
    )
    open_ids.append(
        f"dt-munich/cam-2/camera_fail/{alert('dt-munich', 'cam-2', 'camera_fail', 'major', 650)}"
    )
    open_ids.append(
        f"dt-hamburg/cam-1/low_fps/{alert('dt-hamburg', 'cam-1', 'low_fps', 'minor', 1600)}"
    )
    open_ids.append(
        f"dt-berlin/cam-3/disk_full/{alert('dt-berlin', 'cam-3', 'disk_full', 'warning', 2000)}"
    )
    alert("dt-munich", "cam-1", "model_reload", "info", 3000)
    alert("dt-munich", "cam-1", "model_reload", "info", 2900, state="cleared")

    if heartbeat:
        for k in range(6):
            stats = {
                "received": 1000 + 600 * (5 - k),
                "accepted": 990 + 590 * (5 - k),
                "rejected": 10 + 10 * (5 - k),
                "rejected_json": 2,
                "rejected_schema": 1,
                "batches": 50 + 5 * (5 - k),
                "points": 5000 + 3000 * (5 - k),
                "write_latency_ms_p50": 4.5 + k,
                "write_latency_ms_max": 20.0 + k,
                "queue_depth": 3 + k,
                "lag_ms": 120.0 + 10 * k,
                # A long reporting interval keeps the seeded heartbeat fresh for 30 minutes.
                "interval_s": 600.0,
            }
            lines.append(ingest_stats_line("ingest-1", stats, now - (5 + 60 * k) * NS))

    letters = [
        ("json", "edgewatch/dt-berlin/cam-1/telemetry", "payload is not JSON", "{oops"),
        ("json", "edgewatch/dt-berlin/cam-2/telemetry", "payload is not JSON", "nope"),
        ("schema", "edgewatch/dt-munich/cam-1/alert", "severity: 'huge' is not one", '{"a":1}'),
    ]
    for index, (code, topic, reason, payload) in enumerate(letters):
        lines.append(
            dead_letter_line(
                Rejected(
                    topic=topic,
                    code=code,
                    reason=reason,
                    payload_excerpt=payload,
                    received_ns=now - (30 + index) * NS,
                )
            )
        )
    db.write(lines)
    db.write(state_lines_of(received), bucket=db.bucket_state)
    return FleetTruth(
        states=states,
        site_states={"dt-berlin": "STALE", "dt-munich": "OFFLINE", "dt-hamburg": "OFFLINE"},
        open_by_severity={"critical": 2, "major": 1, "minor": 1, "warning": 1, "info": 0},
        open_alert_ids=open_ids,
        dead_letters_by_code={"json": 2, "schema": 1},
    )


def seed_rollups(db: DashboardDB, *, devices: int = 20, days: int = 90) -> list[tuple[str, str]]:
    """`days` of 1-hour rollups (mean/min/max of cpu_temp_c) for `devices` devices, into 1h."""
    hour_ns = 3600 * NS
    last_hour = (time.time_ns() // hour_ns - 1) * hour_ns
    keys = [(f"roll-site-{i % 4}", f"roll-dev-{i:02d}") for i in range(devices)]
    lines: list[str] = []
    for site, device in keys:
        for h in range(days * 24):
            ts = last_hour - h * hour_ns
            mean = 50.0 + (h % 24)
            for stat, value in (("mean", mean), ("min", mean - 5.0), ("max", mean + 8.0)):
                lines.append(
                    line(
                        "telemetry",
                        {"site": site, "device": device, "stat": stat},
                        {"cpu_temp_c": value},
                        ts,
                    )
                )
    db.write(lines, bucket=db.bucket_1h)
    return keys
