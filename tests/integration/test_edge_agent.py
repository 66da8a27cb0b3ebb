"""The edge agent and the simulator against real Mosquitto, the ingest and InfluxDB."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.agent import EdgeAgent
from edge.spool import Spool
from edge.transport import paho_factory
from edgewatch.contract import MAX_METRICS_PER_READING
from edgewatch.health import DeviceSnapshot, HealthState, device_health
from edgewatch.settings import Settings
from stack.processes import MosquittoProcess, free_port
from stack.testing import InfluxFixture
from tests.integration.ingest_support import (
    REPO_ROOT,
    IngestProcess,
    dead_letters,
    query,
    settings_env,
    stored_readings,
    wait_until,
)

pytestmark = pytest.mark.integration

SettingsFactory = Callable[..., Settings]
NS = 1_000_000_000
MS = 1_000_000
BURST_LINES = 10_000


class Device:
    """A device that stamps its own readings, fed into an in-process agent."""

    def __init__(self, settings: Settings, spool_path: Path, site: str) -> None:
        self.settings = settings
        self.spool_path = spool_path
        self.site = site
        self.sent: list[tuple[int, float]] = []
        self.agent: EdgeAgent | None = None
        self.spool: Spool | None = None
        self._next_ts = time.time_ns() // MS * MS - 600 * NS

    def start(self) -> EdgeAgent:
        self.spool = Spool(self.spool_path)
        self.agent = EdgeAgent(
            site=self.site,
            device="cam-01",
            spool=self.spool,
            transport_factory=paho_factory(self.settings),
            topic_root=self.settings.mqtt_topic_root,
        )
        self.agent.start()
        return self.agent

    def start_connected(self) -> EdgeAgent:
        agent = self.start()
        wait_until(lambda: (agent.pump(0.1), agent.connected)[1], 30, "the agent to connect")
        return agent

    def stop(self) -> None:
        assert self.agent is not None and self.spool is not None
        self.agent.stop(timeout_s=2.0)
        self.spool.close()
        self.agent = self.spool = None

    def take(self, count: int) -> None:
        assert self.agent is not None
        for _ in range(count):
            # A reading every 10 ms of device time, in the recent past: ts is the identity.
            self._next_ts += 10 * MS
            value = float(len(self.sent))
            self.agent.record({"v": value}, ts_ns=self._next_ts)
            self.sent.append((self._next_ts, value))
            self.agent.pump()


def test_readings_survive_a_broker_outage_and_an_agent_restart(
    broker: MosquittoProcess,
    influxdb: InfluxFixture,
    make_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    settings = make_settings(broker, influxdb)
    site = f"edge-{secrets.token_hex(3)}"
    device = Device(settings, tmp_path / "spool.sqlite", site)
    with IngestProcess(settings) as ingest:
        agent = device.start()
        wait_until(lambda: (agent.pump(0.1), agent.connected)[1], 30, "the agent to connect")
        device.take(50)
        wait_until(lambda: (agent.pump(0.1), agent.spool_depth == 0)[1], 30, "the first PUBACKs")

        broker.stop()
        wait_until(lambda: (agent.pump(0.1), not agent.connected)[1], 30, "the agent to notice")
        device.take(300)  # broker down: spooled
        assert agent.spool_depth == 300
        device.stop()  # the agent restarts while the broker is still down
        agent = device.start()
        device.take(1700)
        assert agent.spool_depth == 2000

        broker.start()
        wait_until(
            lambda: (agent.pump(0.2), agent.spool_depth == 0)[1], 120, "the replay to be acked"
        )
        stats = agent.stats
        print(
            f"replay: {stats.messages_published} messages, {stats.batches_published} batches,"
            f" largest {stats.largest_batch} readings"
        )
        assert stats.batches_published >= 2 and stats.largest_batch <= 1000
        device.stop()

        expected = device.sent
        wait_until(
            lambda: len(stored_readings(influxdb, site, "v")) >= len(expected),
            120,
            f"{len(expected)} readings in InfluxDB",
        )
        stored = stored_readings(influxdb, site, "v")
        assert ingest.log_text().count("Traceback") == 0
    # Every reading once, with its own ts and value; none missing, none extra.
    assert stored == expected
    seqs = stored_readings(influxdb, site, "seq")
    assert [ts for ts, _ in seqs] == [ts for ts, _ in expected]
    assert [int(seq) for _, seq in seqs] == list(range(len(expected)))


# ---------------------------------------------------------------------------- the demo


def _fleet_health(influx: InfluxFixture, now_ns: int) -> dict[tuple[str, str], HealthState]:
    telemetry = query(
        influx,
        """
        from(bucket: bucket)
          |> range(start: -1h)
          |> filter(fn: (r) => r._measurement == "telemetry_seq" and r._field == "seq")
          |> group(columns: ["site", "device"])
          |> last()
          |> map(fn: (r) => ({r with ns: int(v: r._time)}))
        """,
        bucket=influx.bucket,
    )
    status = query(
        influx,
        """
        from(bucket: bucket)
          |> range(start: -1h)
          |> filter(fn: (r) => r._measurement == "device_status")
          |> filter(fn: (r) => r._field == "state" or r._field == "reason"
              or r._field == "interval_s")
          |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
          |> group(columns: ["site", "device"])
          |> sort(columns: ["_time"])
          |> last(column: "_time")
          |> map(fn: (r) => ({r with ns: int(v: r._time)}))
        """,
        bucket=influx.bucket,
    )
    last_seen = {(r["site"], r["device"]): int(r["ns"]) for r in telemetry}
    statuses = {(r["site"], r["device"]): r for r in status}
    health = {}
    for key in set(last_seen) | set(statuses):
        st = statuses.get(key, {})
        snapshot = DeviceSnapshot(
            site=key[0],
            device=key[1],
            last_telemetry_ns=last_seen.get(key),
            status_state=st.get("state"),
            status_ns=int(st["ns"]) if st else None,
            status_reason=st.get("reason"),
            interval_s=float(st["interval_s"]) if st.get("interval_s") is not None else None,
        )
        health[key] = device_health(snapshot, now_ns).state
    return health


def _open_critical_alerts(influx: InfluxFixture) -> list[tuple[str, str, str]]:
    rows = query(
        influx,
        """
        from(bucket: bucket)
          |> range(start: -1h)
          |> filter(fn: (r) => r._measurement == "alert_event")
          |> filter(fn: (r) => r._field == "state" or r._field == "severity")
          |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
          |> group(columns: ["site", "device", "type"])
          |> sort(columns: ["_time"])
          |> last(column: "_time")
          |> filter(fn: (r) => r.state == "raised" and r.severity == "critical")
        """,
        bucket=influx.bucket,
    )
    return [(r["site"], r["device"], r["type"]) for r in rows]


def test_simulate_demo_shows_online_stale_offline_and_critical_alerts(
    broker: MosquittoProcess,
    fresh_influxdb: InfluxFixture,
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(broker, fresh_influxdb)
    env = settings_env(settings)
    seen: dict[str, object] = {}
    with IngestProcess(settings) as ingest:
        # The defaults, with the demo clock at 2 s instead of 5 s to keep the test short.
        sim = subprocess.Popen(
            [sys.executable, "-m", "edgewatch.cli", "simulate", "--interval-s", "2"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:

            def mix_present() -> bool:
                health = _fleet_health(fresh_influxdb, time.time_ns())
                alerts = _open_critical_alerts(fresh_influxdb)
                by_state: dict[HealthState, set[str]] = {}
                for (site, _), state in health.items():
                    by_state.setdefault(state, set()).add(site)
                seen.update(health=health, alerts=alerts)
                return (
                    len(health) == 20
                    and all(
                        by_state.get(s)
                        for s in (HealthState.ONLINE, HealthState.STALE, HealthState.OFFLINE)
                    )
                    and len({site for site, _ in health}) == 4
                    and len(alerts) >= 1
                )

            wait_until(mix_present, 90, "ONLINE, STALE, OFFLINE devices and critical alerts", 2.0)
        finally:
            sim.terminate()
            _, err = sim.communicate(timeout=60)
        assert sim.returncode == 0, err.decode()[-4000:]
        assert "Traceback" not in err.decode()
        assert "Traceback" not in ingest.log_text()
    health = seen["health"]
    assert isinstance(health, dict)
    counts = {state: list(health.values()).count(state) for state in HealthState}
    print(f"demo fleet: {counts}, open critical alerts: {seen['alerts']}")


# ---------------------------------------------------------------------------- stdin burst


def _seq_rows(influx: InfluxFixture, site: str) -> list[tuple[int, int]]:
    return [(ts, int(seq)) for ts, seq in stored_readings(influx, site, "seq")]


def _run_agent(settings: Settings, site: str, spool_path: Path, lines: str, *extra: str) -> None:
    """`edgewatch agent` with `lines` on stdin, until EOF; then, if the clean stop left
    anything in the spool, again with empty stdin until the spool is empty (a restart
    replays it)."""
    command = [
        sys.executable,
        "-m",
        "edgewatch.cli",
        "agent",
        "--site",
        site,
        "--device",
        "cam-01",
        "--spool",
        str(spool_path),
        *extra,
    ]
    stdin = lines.encode()
    for _ in range(6):
        done = subprocess.run(
            command,
            check=False,
            input=stdin,
            env=settings_env(settings),
            cwd=REPO_ROOT,
            capture_output=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr.decode()[-4000:]
        assert "Traceback" not in done.stderr.decode()
        stdin = b""
        with Spool(spool_path) as spool:
            if spool.depth == 0:
                return
    raise AssertionError(f"the agent's spool {spool_path} did not drain")


def test_a_burst_of_stdin_lines_without_ts_is_stored_whole(
    broker: MosquittoProcess,
    influxdb: InfluxFixture,
    make_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    """10,000 lines without `ts` piped into `edgewatch agent`: 10,000 readings stored, seq
    0..9999 each once (at millisecond stamps many shared a time and overwrote each other)."""
    settings = make_settings(broker, influxdb)
    site = f"burst-{secrets.token_hex(3)}"
    lines = "".join(f'{{"metrics": {{"v": {i}}}}}\n' for i in range(BURST_LINES))
    with IngestProcess(settings) as ingest:
        _run_agent(settings, site, tmp_path / "agent.sqlite", lines)
        wait_until(
            lambda: len(stored_readings(influxdb, site, "v")) >= BURST_LINES,
            120,
            f"{BURST_LINES} readings in InfluxDB",
        )
        stored = stored_readings(influxdb, site, "v")
        seqs = _seq_rows(influxdb, site)
        assert "Traceback" not in ingest.log_text()
    print(f"stdin burst: {BURST_LINES} lines -> {len(stored)} readings stored")
    assert len(stored) == BURST_LINES
    assert sorted(int(v) for _, v in stored) == list(range(BURST_LINES))
    assert len({ts for ts, _ in stored}) == BURST_LINES  # no two readings share a time
    assert sorted(seq for _, seq in seqs) == list(range(BURST_LINES))


def test_full_readings_are_stored_and_the_agent_still_reports_its_health(
    broker: MosquittoProcess,
    influxdb: InfluxFixture,
    make_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    """Readings of 256 metrics (the contract's limit): the agent's own metrics must not push
    them over it (every message, batches included, would be dead-lettered)."""
    settings = make_settings(broker, influxdb)
    site = f"full-{secrets.token_hex(3)}"
    count = 300
    names = [f"m{i:03d}" for i in range(1, MAX_METRICS_PER_READING)]
    lines = "".join(
        json.dumps({"metrics": {"v": i, **dict.fromkeys(names, 1.5)}}) + "\n" for i in range(count)
    )
    with IngestProcess(settings) as ingest:
        _run_agent(settings, site, tmp_path / "agent.sqlite", lines)
        wait_until(lambda: len(stored_readings(influxdb, site, "v")) >= count, 120, "the readings")
        wait_until(
            lambda: len(stored_readings(influxdb, site, "spool_depth")) >= count, 60, "self-metrics"
        )
        letters = dead_letters(influxdb, influxdb.bucket, f"{settings.mqtt_topic_root}/")
        stored = stored_readings(influxdb, site, "v")
        assert "Traceback" not in ingest.log_text()
    assert letters == []
    assert sorted(int(v) for _, v in stored) == list(range(count))


def test_an_alert_raised_before_an_agent_restart_is_cleared_after_it(
    broker: MosquittoProcess,
    influxdb: InfluxFixture,
    make_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    settings = make_settings(broker, influxdb)
    site = f"rule-{secrets.token_hex(3)}"
    spool_path = tmp_path / "agent.sqlite"
    rule = ("--alert-rule", "overheat:critical:gpu_temp_c>85/5")
    with IngestProcess(settings) as ingest:
        _run_agent(settings, site, spool_path, '{"metrics": {"gpu_temp_c": 91}}\n', *rule)
        # A restart of the agent, then the temperature is back to normal.
        _run_agent(settings, site, spool_path, '{"metrics": {"gpu_temp_c": 70}}\n', *rule)

        def states() -> list[str]:
            rows = query(
                influxdb,
                """
                from(bucket: bucket) |> range(start: 0)
                  |> filter(fn: (r) => r._measurement == "alert_event" and r.site == site)
                  |> filter(fn: (r) => r._field == "state")
                  |> group() |> sort(columns: ["_time"])
                """,
                bucket=influxdb.bucket,
                site=site,
            )
            return [str(row["_value"]) for row in rows]

        wait_until(lambda: len(states()) >= 2, 60, "the raise and the clear")
        assert "Traceback" not in ingest.log_text()
    assert states() == ["raised", "cleared"]


# ---------------------------------------------------------------------------- refusals


def test_readings_refused_by_the_broker_acl_are_kept_and_delivered_once_it_is_fixed(
    influxdb: InfluxFixture, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """The agent's publishes are refused (PUBACK 0x87 Not authorized: an ACL that lets it
    read only); nothing is deleted; after the ACL is fixed every reading is stored."""
    acl = tmp_path / "acl"
    acl.write_text("topic read #\n")
    port = free_port()
    listener = "\n".join(
        [
            "per_listener_settings false",
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            f"acl_file {acl}",
        ]
    )
    broker = MosquittoProcess(port=port, data_dir=tmp_path / "mosquitto", listener_conf=listener)
    broker.start()
    try:
        settings = make_settings(broker, influxdb)
        site = f"acl-{secrets.token_hex(3)}"
        device = Device(settings, tmp_path / "spool.sqlite", site)
        with IngestProcess(settings) as ingest:
            agent = device.start_connected()
            device.take(50)
            wait_until(lambda: (agent.pump(0.1), agent.stats.retried >= 50)[1], 60, "the refusals")
            assert agent.spool_depth == 50 and agent.stats.refused == 0

            acl.write_text("topic readwrite #\n")
            assert broker.pid is not None
            os.kill(broker.pid, signal.SIGHUP)  # Mosquitto reloads its ACL file
            wait_until(lambda: (agent.pump(0.2), agent.spool_depth == 0)[1], 120, "the retries")
            retried = agent.stats.retried
            self_metrics = agent.self_metrics()
            device.stop()
            wait_until(
                lambda: len(stored_readings(influxdb, site, "v")) >= len(device.sent),
                60,
                "the readings in InfluxDB",
            )
            stored = stored_readings(influxdb, site, "v")
            assert "Traceback" not in ingest.log_text()
    finally:
        broker.stop()
    print(f"acl refusal: {retried} publishes refused and retried, {len(stored)} stored")
    assert stored == device.sent
    assert self_metrics["publish_retries"] >= 50 and self_metrics["publish_refused"] == 0
