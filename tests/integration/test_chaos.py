"""The chaos test: a simulated fleet with every fault, while the path around it breaks.

The scenario is bench/chaos.py's: the simulator (every fault of edge/devices.py, plus one
site cut off for more than 10 minutes of its own time) on an accelerated device clock 1 to
2 h in the past, through real Mosquitto, the real ingest as a separate process with its
journal, real influxd and the rollup service; meanwhile the ingest is killed -9 twice and
restarted, influxd is stopped for 20 s and restarted on its data dir, and the broker
restarts (persistence on). Then the pure reconciler (bench/reconcile.py) checks the store
against the simulator's ground truth, with the open alerts as the dashboard folds them, and
the test prints its table (`pytest -s`): every count must be equal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from influxdb_client import InfluxDBClient

from bench.chaos import (
    ChaosControls,
    Scenario,
    ground_truth,
    offline_stored,
    run_checks,
    run_fleet,
    settle,
    stored_state,
)
from bench.reconcile import Stored, format_table
from dashboard import data
from dashboard.ranges import TimeRange
from edgewatch.settings import Settings
from stack.processes import MosquittoProcess
from stack.testing import InfluxFixture
from tests.integration.ingest_support import IngestProcess
from tests.integration.test_rollup import ThreadedRollup

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SettingsFactory = Callable[..., Settings]
# 3 sites x 4 devices for 150 s at 8 device seconds a second: 20 min of device time, the cut
# site offline for ~12 of them; ~2,600 readings.
SCENARIO = Scenario(sites=3, devices_per_site=4, real_seconds=150.0, speed=8.0)


def dashboard_open_alerts(client: InfluxDBClient, settings: Settings) -> frozenset[object]:
    """The open alerts as the dashboard's Alerts page folds them from the state bucket."""
    store = data.FleetStore(client=client, connection=data.Connection.from_settings(settings))
    now = datetime.now(tz=UTC)
    records = store.alert_records(TimeRange(start=now - timedelta(days=1), stop=now))
    return frozenset((r.site, r.device, r.type) for r in records if r.is_open)


def test_chaos_every_count_equal(
    broker: MosquittoProcess,
    fresh_influxdb: InfluxFixture,
    make_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    fx = fresh_influxdb
    settings = make_settings(broker, fx)
    rollup_settings = make_settings(
        None,
        fx,
        rollup_interval_seconds=2.0,
        # The frontier starts before the first reading: every minute is aggregated by it, and
        # again through the dirty-hour markers as the late readings arrive.
        rollup_first_catch_up_seconds=3 * 3600.0,
    )
    spool_dir = tmp_path / "spools"
    spool_dir.mkdir()
    with ThreadedRollup(rollup_settings), IngestProcess(settings) as ingest:

        def restart_ingest() -> None:
            ingest.start()
            ingest.wait_subscribed()

        controls = ChaosControls(
            kill_ingest=ingest.kill,
            start_ingest=restart_ingest,
            stop_influxd=fx.process.stop,
            start_influxd=fx.process.start,
            restart_broker=broker.restart,
        )
        run = run_fleet(SCENARIO, settings, controls, spool_dir)
        truth = ground_truth(run)
        with InfluxDBClient(url=fx.url, token=fx.admin_token, org=fx.org, timeout=120_000) as c:

            def observe() -> Stored:
                return stored_state(c, settings, dashboard_open_alerts(c, settings))

            checks, stored = settle(truth, observe)
        assert ingest.is_running, "the ingest died"
        checks += run_checks(run, SCENARIO, ingest.log_text().count("mqtt subscribed to"))
        checks.append(offline_stored(run, SCENARIO, stored))
    print(f"\nchaos: {len(run.truth)} readings; faults {dict(run.sim.stats.faults)}")
    print(f"chaos: wall time {time.monotonic() - started:.0f} s")
    print(format_table(checks))
    assert all(c.equal for c in checks), format_table(checks)
