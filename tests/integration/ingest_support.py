"""Helpers of the ingest integration tests: run the ingest, publish, query InfluxDB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from influxdb_client import InfluxDBClient
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgewatch.settings import Settings
from ingest.service import IngestService
from stack.testing import InfluxFixture

REPO_ROOT = Path(__file__).resolve().parents[2]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce `settings` in a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "INFLUXDB_V2_"))}
    env = {k: v for k, v in env.items() if not k.startswith("EDGEWATCH_")}
    for name, info in Settings.model_fields.items():
        value = getattr(settings, name)
        if value is None or info.alias is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[info.alias] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class IngestProcess:
    """`python -m ingest` as a child process, its log in a temp dir removed at exit."""

    def __init__(self, settings: Settings, *, name: str = "ingest") -> None:
        self.settings = settings
        self.name = name
        self._dir = tempfile.TemporaryDirectory(prefix="edgewatch-ingest-test-")
        self.log_path = Path(self._dir.name) / f"{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._starts = 0

    def start(self) -> None:
        assert self._proc is None or self._proc.poll() is not None
        self._starts += 1
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "ingest", "--log-level", "INFO"],
                cwd=REPO_ROOT,
                env=settings_env(self.settings),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_subscribed(self, timeout_seconds: float = 30.0) -> None:
        """Until this run of the process logged its subscriptions."""
        wait_until(
            lambda: self.log_text().count("mqtt subscribed to") >= self._starts,
            timeout_seconds,
            f"{self.name} to subscribe",
            poll=0.1,
        )

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no flush, no acknowledgement, no disconnect."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def terminate(self, timeout_seconds: float = 60.0) -> int:
        """SIGTERM and wait; the exit code."""
        assert self._proc is not None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        try:
            return self._proc.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            raise

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_subscribed()
        except BaseException:
            # __exit__ does not run when __enter__ fails: never leave the process behind.
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.kill()
        finally:
            if exc_type is not None:
                print(f"--- {self.name} log ---\n{self.log_text()[-6000:]}")
            self._dir.cleanup()


class ThreadedIngest:
    """The ingest service in a thread of the test process (no signals)."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.service = IngestService(settings=settings, **kwargs)
        self.result: int | None = None
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)

    def _run(self) -> None:
        self.result = self.service.run()

    def __enter__(self) -> Self:
        self._thread.start()
        assert self.service.subscribed.wait(30), "ingest did not subscribe"
        return self

    def __exit__(self, *exc: object) -> None:
        self.service.request_stop()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "ingest did not stop"


class Publisher:
    """A QoS 1 paho publisher that reconnects by itself and resends what was not acked."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.max_inflight_messages_set(200)
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(1, 2)
        self._connected = threading.Event()
        self._client.on_connect = lambda *a: self._connected.set()
        self._acked: set[int] = set()
        self._lock = threading.Lock()
        self._client.on_publish = self._on_publish
        self._client.connect_async(host, port, keepalive=30, clean_start=False)
        self._client.loop_start()
        assert self._connected.wait(30), "publisher could not connect"
        self._mids: list[int] = []

    def _on_publish(self, client: Any, userdata: Any, mid: int, *rest: Any) -> None:
        with self._lock:
            self._acked.add(mid)

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, content_type: str | None = None
    ) -> None:
        # paho keeps a QoS 1 message published while disconnected and sends it on reconnect
        # (its MessageInfo then reports an error), so completion is tracked by PUBACKs.
        properties = None
        if content_type is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ContentType = content_type
        info = self._client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        self._mids.append(info.mid)
        assert len(self._mids) < 60000, "mids would repeat: publish fewer, larger messages"

    def wait_all(self, timeout_seconds: float = 120.0) -> None:
        """Until the broker acknowledged every message (PUBACK)."""

        def done() -> bool:
            with self._lock:
                return all(mid in self._acked for mid in self._mids)

        wait_until(done, timeout_seconds, "the broker to acknowledge all publishes", poll=0.05)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def query(fx: InfluxFixture, flux: str, **params: object) -> list[dict[str, Any]]:
    with InfluxDBClient(url=fx.url, token=fx.admin_token, org=fx.org, timeout=60_000) as client:
        tables = client.query_api().query(flux, params=params)
    return [record.values for table in tables for record in table.records]


def count_field(fx: InfluxFixture, bucket: str, measurement: str, site: str, field: str) -> int:
    rows = query(
        fx,
        """
        from(bucket: bucket)
          |> range(start: 0)
          |> filter(fn: (r) => r._measurement == m and r.site == site)
          |> filter(fn: (r) => r._field == f)
          |> group()
          |> count()
        """,
        bucket=bucket,
        m=measurement,
        site=site,
        f=field,
    )
    return int(rows[0]["_value"]) if rows else 0


def stored_readings(fx: InfluxFixture, site: str, field: str) -> list[tuple[int, float]]:
    """(time in ns, value) of every stored reading of `field` at `site`, oldest first; `seq`
    is read from `telemetry_seq`."""
    rows = query(
        fx,
        """
        from(bucket: bucket)
          |> range(start: 0)
          |> filter(fn: (r) => r._measurement == m and r.site == site and r._field == f)
          |> map(fn: (r) => ({r with ns: int(v: r._time)}))
          |> group()
          |> sort(columns: ["_time"])
        """,
        bucket=fx.bucket,
        m="telemetry" if field != "seq" else "telemetry_seq",
        site=site,
        f=field,
    )
    return [(int(row["ns"]), float(row["_value"])) for row in rows]


def dead_letters(fx: InfluxFixture, bucket: str, topic_prefix: str) -> list[dict[str, Any]]:
    """Dead letters whose topic starts with `topic_prefix`, pivoted to one row each."""
    return query(
        fx,
        """
        import "strings"
        from(bucket: bucket)
          |> range(start: 0)
          |> filter(fn: (r) => r._measurement == "dead_letter")
          |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
          |> filter(fn: (r) => strings.hasPrefix(v: r.topic, prefix: prefix))
          |> map(fn: (r) => ({r with ns: int(v: r._time)}))
          |> group()
        """,
        bucket=bucket,
        prefix=topic_prefix,
    )


def wait_until(
    predicate: Callable[[], bool], timeout_seconds: float, what: str, poll: float = 1.0
) -> None:
    deadline = time.monotonic() + timeout_seconds
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_seconds:.0f} s waiting for {what}")
        time.sleep(poll)


def reading_payloads(
    start_ns: int, count: int, per_message: int, step_ns: int = 1_000_000
) -> Iterable[tuple[int, bytes]]:
    """Payloads of `count` readings with distinct timestamps, `per_message` to a message.

    Yields (readings in it, payload). Each reading has v = its index, so a test can tell them
    apart; timestamps are epoch seconds with nanosecond digits as RFC 3339 text.
    """
    index = 0
    while index < count:
        batch = []
        for _ in range(min(per_message, count - index)):
            ts_ns = start_ns + index * step_ns
            seconds, nanos = divmod(ts_ns, 1_000_000_000)
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
            batch.append(f'{{"ts":"{ts}","seq":{index},"metrics":{{"v":{index}}}}}')
            index += 1
        yield len(batch), ('{"batch":[' + ",".join(batch) + "]}").encode()
