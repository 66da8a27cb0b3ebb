"""Helpers of the alerter integration tests: devices with a real last will, the alerter
in a thread or as a child process, and reads of what it stored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from alerter.cli import build_alerter
from alerter.service import run_forever
from edge.transport import Connected, LinkConfig, PahoTransport
from edgewatch.settings import Settings
from stack.bootstrap import load_credentials
from stack.testing import InfluxFixture
from tests.integration.ingest_support import REPO_ROOT, query, settings_env

INTERVAL_S = 2.0


class Device:
    """One device: a birth, telemetry every second, its last will set on its own connection."""

    def __init__(self, settings: Settings, site: str, device: str) -> None:
        self.settings = settings
        self.site = site
        self.device = device
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._link: PahoTransport | None = None

    def _topic(self, kind: str) -> str:
        return f"{self.settings.mqtt_topic_root}/{self.site}/{self.device}/{kind}"

    def start(self) -> None:
        self._stop.clear()
        connected = threading.Event()

        def on_event(event: object) -> None:
            if isinstance(event, Connected):
                connected.set()

        self._link = PahoTransport(
            config=LinkConfig(
                client_id=f"{self.settings.mqtt_topic_root}-{self.site}-{self.device}",
                will_topic=self._topic("status"),
                will_payload=json.dumps({"state": "offline", "reason": "lwt"}).encode(),
                sink=on_event,
            ),
            host=self.settings.mqtt_host,
            port=self.settings.mqtt_port,
            keepalive_s=5,
        )
        self._link.start()
        assert connected.wait(30), f"{self.device} could not connect"
        birth = {"state": "online", "interval_s": INTERVAL_S, "model": "yolo-v8n"}
        self._link.publish(self._topic("status"), json.dumps(birth).encode(), retain=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seq = 0
        while not self._stop.wait(1.0):
            seq += 1
            reading = {"ts": time.time(), "seq": seq, "metrics": {"cpu_temp_c": 50.0}}
            assert self._link is not None
            self._link.publish(self._topic("telemetry"), json.dumps(reading).encode())

    def crash(self) -> None:
        """Stop sending and drop the connection so the broker publishes the last will."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._link is not None:
            self._link.abort()
            self._link = None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._link is not None:
            self._link.stop(timeout_s=5)
            self._link = None


class ThreadedAlerter:
    """`edgewatch alerter` in a thread of the test, built from settings like the CLI does."""

    def __init__(self, settings: Settings) -> None:
        self.alerter, self._client, _, _ = build_alerter(settings)
        self._interval = settings.rules_interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=run_forever, args=(self.alerter, self._interval, self._stop), daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self._client.close()
        assert not self._thread.is_alive(), "alerter did not stop"


class AlerterProcess:
    """`edgewatch alerter` as a child process (for kill -9), its log in a temp dir."""

    def __init__(self, settings: Settings) -> None:
        self._env = settings_env(settings)
        self._dir = tempfile.TemporaryDirectory(prefix="edgewatch-alerter-test-")
        self.log_path = Path(self._dir.name) / "alerter.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "edgewatch.cli", "--log-level", "INFO", "alerter"],
                cwd=REPO_ROOT,
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGKILL)
        self._proc.wait()

    def terminate(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.terminate()
        if exc_type is not None:
            print(f"--- alerter log ---\n{self.log_text()[-6000:]}")
        self._dir.cleanup()


def alerter_token_of(fx: InfluxFixture) -> str:
    """The alerter's own token as the bootstrap made it (reads all; writes state and ops)."""
    return load_credentials(fx.credentials_path).alerter_token


def alert_events(fx: InfluxFixture, site: str) -> list[dict[str, Any]]:
    """The site's alert events in the state bucket (devices' and rules'), exact times too."""
    flux = """
from(bucket: _bucket) |> range(start: -1h)
  |> filter(fn: (r) => r._measurement == "alert_event" and r.site == _site)
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> map(fn: (r) => ({r with time_ns: int(v: r._time)}))
"""
    return query(fx, flux, _bucket=fx.bucket_state, _site=site)


def notification_records(fx: InfluxFixture, site: str) -> list[dict[str, Any]]:
    flux = """
from(bucket: _bucket) |> range(start: -1h)
  |> filter(fn: (r) => r._measurement == "notification" and r.site == _site)
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
"""
    return query(fx, flux, _bucket=fx.bucket_ops, _site=site)
