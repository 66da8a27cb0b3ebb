"""`edgewatch demo`, what the README's run command starts: the whole system on localhost.

Runs it for a bounded time in its own state dir on free ports, then checks that the
dashboard answered, that simulated telemetry reached InfluxDB through the ingest over TLS,
and that `stack down` leaves nothing running.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from influxdb_client import InfluxDBClient

from stack.bootstrap import load_credentials
from stack.processes import free_port, pid_alive

pytestmark = pytest.mark.integration

DEMO_SECONDS = 25
TIMEOUT_SECONDS = 240


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgewatch.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_demo_runs_the_whole_system_and_stops_cleanly(tmp_path: Path) -> None:
    dashboard_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "INFLUXDB_V2_"))}
    env.update(
        {
            "EDGEWATCH_STATE_DIR": str(tmp_path / "state"),
            "MQTT_PORT": str(free_port()),
            "MQTT_TLS_PORT": str(free_port()),
            "MQTT_TLS_PASSWORD_PORT": str(free_port()),
            "INFLUXDB_V2_URL": f"http://127.0.0.1:{free_port()}",
            "EDGEWATCH_DASHBOARD_PORT": str(dashboard_port),
        }
    )
    try:
        demo = _cli(
            env,
            "demo",
            "--sites",
            "2",
            "--devices",
            "2",
            "--duration",
            str(DEMO_SECONDS),
            timeout=TIMEOUT_SECONDS,
        )
        assert demo.returncode == 0, demo.stderr[-3000:]
        assert f"open http://127.0.0.1:{dashboard_port}" in demo.stdout
        assert "sign in as operator / " in demo.stdout
        assert "notifications (what would page someone) go to" in demo.stdout
        creds = load_credentials(tmp_path / "state" / "credentials.json")
        with InfluxDBClient(url=creds.url, token=creds.admin_token, org=creds.org) as client:
            tables = client.query_api().query(
                'from(bucket: "edgewatch") |> range(start: -10m)'
                ' |> filter(fn: (r) => r._measurement == "telemetry")'
                ' |> group(columns: ["site", "device"]) |> count()'
            )
        devices = {(r.values["site"], r.values["device"]) for t in tables for r in t.records}
        assert len(devices) >= 2, devices
        # Each service ran with its own secrets only: the ingest's log shows the TLS port
        # of password sign-ins (the certificate listener is the devices').
        ingest_log = (tmp_path / "state" / "log" / "ingest.log").read_text()
        assert f"127.0.0.1:{env['MQTT_TLS_PASSWORD_PORT']}" in ingest_log
        # The rollup service ran, with its own token.
        rollup_log = (tmp_path / "state" / "log" / "rollup.log").read_text()
        assert "rollup service started" in rollup_log
        # The alerter ran too, with its own token, evaluating the built-in rules.
        alerter_log = (tmp_path / "state" / "log" / "alerter.log").read_text()
        assert "alerter running" in alerter_log, alerter_log[-2000:]
    finally:
        down = _cli(env, "stack", "down")
    assert down.returncode == 0, down.stderr
    run_dir = tmp_path / "state" / "run"
    assert not list(run_dir.glob("*.pid"))
    for log in ("mosquitto", "influxd"):
        assert (tmp_path / "state" / "log" / f"{log}.log").exists()
    assert all(not pid_alive(int(p.read_text())) for p in run_dir.glob("*.pid"))
