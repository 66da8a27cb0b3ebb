"""bench room: a private Mosquitto and InfluxDB per measurement, and the reads every bench needs.

Each `bench_env` is fresh (free ports, a temp dir, a bootstrapped InfluxDB with its rollup
tasks switched off so nothing but the measured load runs) and is stopped and removed when the
block ends, also on Ctrl-C. Touches: child processes, a temp dir, loopback ports.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.domain.post_bucket_request import PostBucketRequest
from influxdb_client.domain.task_update_request import TaskUpdateRequest

from stack.bootstrap import BucketNames, bootstrap
from stack.ephemeral import DEFAULT_BUCKETS, DEFAULT_ORG, temp_dir
from stack.processes import InfluxdProcess, MosquittoProcess, free_port

logger = logging.getLogger(__name__)

BENCH_ORG = DEFAULT_ORG
BENCH_BUCKETS = DEFAULT_BUCKETS
QUERY_TIMEOUT_MS = 120_000

Progress = Callable[[str], None]


def write_result(path: Path, result: dict[str, Any]) -> None:
    """A bench's result as JSON, to `path` (its directory made if need be) and to stdout."""
    text = json.dumps(result, indent=2, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    print(text)


def stderr_progress(message: str) -> None:
    """One progress line on stderr, stamped with the wall clock."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class BenchEnv:
    """A running broker and a bootstrapped InfluxDB, with the admin token."""

    root: Path
    mosquitto: MosquittoProcess
    influxd: InfluxdProcess
    org: str
    org_id: str
    token: str = field(repr=False)
    buckets: BucketNames = BENCH_BUCKETS
    _client: InfluxDBClient | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.influxd.url

    @property
    def client(self) -> InfluxDBClient:
        if self._client is None:
            self._client = InfluxDBClient(
                url=self.url, token=self.token, org=self.org, timeout=QUERY_TIMEOUT_MS
            )
        return self._client

    def create_bucket(self, name: str) -> str:
        """A new bucket with infinite retention (seeded data may be months old)."""
        request = PostBucketRequest(org_id=self.org_id, name=name, retention_rules=[])  # type: ignore[no-untyped-call]
        self.client.buckets_api().create_bucket(bucket=request)
        return name

    def query_rows(self, flux: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        tables = self.client.query_api().query(flux, org=self.org, params=params or {})
        return [record.values for table in tables for record in table.records]

    def count_points(
        self,
        bucket: str,
        *,
        field_name: str | None,
        exclude_site: str | None = None,
        start: str = "0",
    ) -> int:
        """Stored `telemetry` values: of one field, or of all fields when `field_name` is None.

        `count()` right after the filter is pushed down to the storage engine, so polling
        this while a run writes costs InfluxDB little.
        """
        predicates = ['r._measurement == "telemetry"']
        if field_name is not None:
            predicates.append(f'r._field == "{field_name}"')
        if exclude_site is not None:
            predicates.append(f'r.site != "{exclude_site}"')
        flux = (
            f'from(bucket: "{bucket}") |> range(start: {start})'
            f" |> filter(fn: (r) => {' and '.join(predicates)})"
            ' |> count() |> group() |> sum(column: "_value")'
        )
        rows = self.query_rows(flux)
        return int(rows[0]["_value"]) if rows else 0

    def close(self) -> None:
        if self._client is not None:
            self._client.close()  # type: ignore[no-untyped-call]
            self._client = None


def _deactivate_tasks(client: InfluxDBClient, org_id: str) -> None:
    # The rollup tasks would read and write while we measure; the bench seeds rollups itself.
    tasks = client.tasks_api()
    for task in tasks.find_tasks(org_id=org_id):  # type: ignore[no-untyped-call]
        if task.status != "inactive":
            request = TaskUpdateRequest(status="inactive")  # type: ignore[no-untyped-call]
            tasks.update_task_request(task_id=task.id, task_update_request=request)


@contextmanager
def bench_env(
    *,
    influxd_binary: Path,
    name: str,
    progress: Progress,
    broker_max_inflight: int = 0,
) -> Iterator[BenchEnv]:
    """Fresh Mosquitto + influxd in a temp dir; everything stopped and removed afterwards.

    `broker_max_inflight` 0 lets each consumer bound its own in-flight window (the ingest by
    MQTT 5 Receive Maximum, Telegraf by `max_undelivered_messages`); Mosquitto's per-client
    cap would otherwise decide the throughput of both.
    """
    with temp_dir(f"bench-{name}") as root:
        progress(f"{name}: starting mosquitto and influxd in {root}")
        broker = MosquittoProcess(
            port=free_port(),
            data_dir=root / "mosquitto",
            max_inflight_messages=broker_max_inflight,
        )
        influxd = InfluxdProcess(
            http_port=free_port(), data_dir=root / "influxdb", binary=influxd_binary
        )
        env: BenchEnv | None = None
        try:
            broker.start()
            influxd.start()
            creds = bootstrap(
                url=influxd.url,
                org=BENCH_ORG,
                buckets=BENCH_BUCKETS,
                credentials_path=root / "credentials.json",
            )
            with InfluxDBClient(url=influxd.url, token=creds.admin_token) as admin:
                _deactivate_tasks(admin, creds.org_id)
            env = BenchEnv(
                root=root,
                mosquitto=broker,
                influxd=influxd,
                org=creds.org,
                org_id=creds.org_id,
                token=creds.admin_token,
            )
            yield env
        finally:
            if env is not None:
                env.close()
            # Stop both even if the first stop fails or Ctrl-C arrives again.
            try:
                influxd.stop()
            finally:
                broker.stop()
