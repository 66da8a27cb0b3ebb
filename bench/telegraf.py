"""bench room: the peer we measure the ingest against, a minimal Telegraf.

Telegraf is built from its Go module with only the plugins the comparison needs
(`inputs.mqtt_consumer`, the JSON parsers, `outputs.influxdb_v2`) and cached next to influxd.
Its configuration gives it the same delivery guarantees as the ingest: QoS 1, a persistent
session, and acknowledgement only after the output wrote the batch (Telegraf's tracking
metrics, bounded by `max_undelivered_messages`). Touches: the cache dir, `go` subprocesses,
a temp dir with its config and log, the broker and InfluxDB on loopback.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from stack.gobuild import (
    Progress,
    file_lock,
    go_build_binary,
    writable_module_copy,
)
from stack.processes import ManagedProcess

logger = logging.getLogger(__name__)

TELEGRAF_VERSION = "1.37.2"
TELEGRAF_MODULE = "github.com/influxdata/telegraf"
BUILD_TAGS = "custom,inputs.mqtt_consumer,outputs.influxdb_v2,parsers.json_v2,parsers.json"
# Any `go build` of a custom Telegraf, started by us or by hand, shows up with this prefix.
FOREIGN_BUILD_PATTERN = "go build -tags custom"
PROGRESS_INTERVAL_SECONDS = 20.0
FOREIGN_BUILD_POLL_SECONDS = 5.0
METRIC_BATCH_SIZE = 5000
FLUSH_INTERVAL_SECONDS = 1
START_GRACE_SECONDS = 2.0


class TelegrafBuildError(RuntimeError):
    """The Telegraf build failed; the message names the log file."""


def telegraf_path(cache_dir: Path, version: str = TELEGRAF_VERSION) -> Path:
    return cache_dir / f"telegraf-{version}"


def foreign_build_running() -> bool:
    """Whether a custom Telegraf `go build` runs on this machine right now (anyone's)."""
    result = subprocess.run(
        ["pgrep", "-f", FOREIGN_BUILD_PATTERN], capture_output=True, text=True, check=False
    )
    own = str(os.getpid())
    return any(pid and pid != own for pid in result.stdout.split())


def _wait_for_foreign_build(progress: Progress) -> None:
    started = time.monotonic()
    next_report = started
    while foreign_build_running():
        if time.monotonic() >= next_report:
            progress(
                f"another Telegraf build is running; waiting ({time.monotonic() - started:.0f} s)"
            )
            next_report += PROGRESS_INTERVAL_SECONDS
        time.sleep(FOREIGN_BUILD_POLL_SECONDS)


def build_telegraf(cache_dir: Path, version: str, *, progress: Progress) -> Path:
    """go mod download -> writable copy -> go build with our tags -> cache. A few minutes."""
    final = telegraf_path(cache_dir, version)
    log = cache_dir / "build" / f"telegraf-{version}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    if shutil.which("go") is None:
        raise TelegrafBuildError("`go` is not on PATH; building Telegraf needs Go")
    progress(f"building telegraf {version} with tags {BUILD_TAGS}; log: {log}")
    work = writable_module_copy(
        TELEGRAF_MODULE,
        version,
        cache_dir / "build" / f"telegraf-{version}",
        log=log,
        error=TelegrafBuildError,
    )
    started = time.monotonic()
    go_build_binary(
        "./cmd/telegraf",
        work=work,
        final=final,
        build_args=["-tags", BUILD_TAGS],
        log=log,
        what=f"building telegraf {version}",
        progress=progress,
        interval_seconds=PROGRESS_INTERVAL_SECONDS,
        error=TelegrafBuildError,
    )
    progress(f"telegraf {version} built in {time.monotonic() - started:.0f} s: {final}")
    return final


def ensure_telegraf(
    cache_dir: Path, version: str = TELEGRAF_VERSION, *, progress: Progress | None = None
) -> Path:
    """The cached Telegraf binary, built once; waits for a build someone else is running."""
    say: Progress = progress or logger.info
    final = telegraf_path(cache_dir, version)
    if final.is_file():
        return final
    with file_lock(cache_dir / f"telegraf-{version}.lock"):
        _wait_for_foreign_build(say)
        if final.is_file():
            return final
        tmp = final.with_name(final.name + ".tmp")
        if tmp.is_file() and _runs(tmp):
            # A finished build by hand that nobody moved into place yet.
            tmp.rename(final)
            return final
        return build_telegraf(cache_dir, version, progress=say)


def _runs(binary: Path) -> bool:
    result = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    return result.returncode == 0 and "Telegraf" in result.stdout


def telegraf_version(binary: Path) -> str:
    result = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    return result.stdout.strip() or "unknown"


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


@dataclass(frozen=True, slots=True)
class TelegrafConfig:
    mqtt_host: str
    mqtt_port: int
    topic_root: str
    influxdb_url: str
    token: str
    org: str
    bucket: str
    client_id: str = "edgewatch-bench-telegraf"
    metric_batch_size: int = METRIC_BATCH_SIZE
    flush_interval_seconds: int = FLUSH_INTERVAL_SECONDS
    # Payloads are `{"batch": [reading, ...]}`: json_v2 makes one metric per array element.
    batch: bool = False
    # Messages in flight before acknowledgement. With batches each message is many metrics:
    # the in-flight metrics must fit the output buffer (metric_buffer_limit), or Telegraf
    # drops the oldest from it, acknowledged and never written (seen: 560 of 120,000 lost).
    max_undelivered_messages: int | None = None


def _json_v2(batch: bool) -> str:
    if not batch:
        return """  [[inputs.mqtt_consumer.json_v2]]
    measurement_name = "telemetry"
    timestamp_path = "ts"
    timestamp_format = "unix"
    timestamp_timezone = "UTC"
    [[inputs.mqtt_consumer.json_v2.object]]
      path = "metrics"
      disable_prepend_keys = true
"""
    # Each element's `ts` is its time, `metrics` its fields; `seq` is not stored (the ingest
    # stores it in its own measurement, not as a telemetry field).
    return """  [[inputs.mqtt_consumer.json_v2]]
    measurement_name = "telemetry"
    [[inputs.mqtt_consumer.json_v2.object]]
      path = "batch"
      timestamp_key = "ts"
      timestamp_format = "unix"
      timestamp_timezone = "UTC"
      disable_prepend_keys = true
      excluded_keys = ["seq"]
"""


def render_config(config: TelegrafConfig) -> str:
    """telegraf.conf: `{root}/+/+/telemetry` -> measurement `telemetry` in its own bucket.

    The same shape the ingest stores: tags site and device from the topic, one field per
    entry of `metrics`, time from `ts` (epoch seconds). The topic tag is off, as the ingest
    does not store the topic either.
    """
    return f"""# Written by edgewatch bench (bench/telegraf.py).
[agent]
  interval = "10s"
  round_interval = false
  metric_batch_size = {config.metric_batch_size}
  metric_buffer_limit = {config.metric_batch_size * 4}
  flush_interval = "{config.flush_interval_seconds}s"
  flush_jitter = "0s"
  omit_hostname = true
  quiet = true

[[inputs.mqtt_consumer]]
  servers = [{_toml_string(f"tcp://{config.mqtt_host}:{config.mqtt_port}")}]
  topics = [{_toml_string(f"{config.topic_root}/+/+/telemetry")}]
  topic_tag = ""
  qos = 1
  persistent_session = true
  client_id = {_toml_string(config.client_id)}
  # Acknowledge to the broker only after the output wrote the metrics: one batch in flight.
  max_undelivered_messages = {config.max_undelivered_messages or config.metric_batch_size}
  data_format = "json_v2"

  [[inputs.mqtt_consumer.topic_parsing]]
    topic = {_toml_string(f"{config.topic_root}/+/+/telemetry")}
    tags = "_/site/device/_"

{_json_v2(config.batch)}
[[outputs.influxdb_v2]]
  urls = [{_toml_string(config.influxdb_url)}]
  token = {_toml_string(config.token)}
  organization = {_toml_string(config.org)}
  bucket = {_toml_string(config.bucket)}
  content_encoding = "gzip"
  metric_batch_size = {config.metric_batch_size}
"""


class TelegrafProcess(ManagedProcess):
    """Telegraf with its config and log in `data_dir`; ready once it is running."""

    name = "telegraf"
    env_var = "MQTT_PORT"

    def __init__(self, *, config: TelegrafConfig, data_dir: Path, binary: Path) -> None:
        # ManagedProcess checks that `port` is free before starting; Telegraf listens on
        # nothing, so it gets port 0, which is always "free".
        super().__init__(port=0, data_dir=data_dir, binary=binary)
        self.config = config
        self._started_at = 0.0

    @property
    def config_path(self) -> Path:
        return self.data_dir / "telegraf.conf"

    def command(self) -> list[str]:
        self.config_path.write_text(render_config(self.config))
        self._started_at = time.monotonic()
        return [str(self.binary), "--config", str(self.config_path)]

    def environment(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("INFLUX")}

    def is_ready(self) -> bool:
        # Telegraf has no health endpoint in this build: alive for a moment after start
        # means it parsed its config and connected (it exits on a failed first connect).
        return time.monotonic() - self._started_at >= START_GRACE_SECONDS
