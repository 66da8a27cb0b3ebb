"""stack room: throw-away Mosquitto and InfluxDB processes, for the tests and the benchmarks.

Each one runs on a free loopback port in a temp dir of its own and is stopped and removed
when its block ends, so no process, port or temp dir is left behind; `settings_for` points
settings at them, on a topic root of their own. The test fixtures (`stack/testing.py`,
`tests/conftest.py`) and the benchmarks (`bench/harness.py`) both start their processes here,
with the same code `edgewatch stack up` runs. Touches: temp dirs it makes and removes, the
processes it starts and stops.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from edgewatch.settings import Settings, load_settings
from stack.bootstrap import BucketNames, bootstrap
from stack.influxd import influxd_path
from stack.local_stack import default_bucket_names
from stack.processes import InfluxdProcess, MosquittoProcess, free_port

DEFAULT_ORG: str = Settings.model_construct().influxdb_org
DEFAULT_BUCKETS = default_bucket_names()


@dataclass(frozen=True)
class InfluxFixture:
    """A running, bootstrapped InfluxDB and everything a client needs to talk to it."""

    url: str
    org: str
    admin_token: str = field(repr=False)
    ingest_token: str = field(repr=False)
    dashboard_token: str = field(repr=False)
    rollup_token: str = field(repr=False)
    bucket: str
    bucket_1m: str
    bucket_1h: str
    bucket_ops: str
    bucket_state: str
    process: InfluxdProcess
    org_id: str = ""
    credentials_path: Path = Path()

    @property
    def buckets(self) -> BucketNames:
        return BucketNames(
            raw=self.bucket,
            m1=self.bucket_1m,
            h1=self.bucket_1h,
            ops=self.bucket_ops,
            state=self.bucket_state,
        )


def cached_influxd(settings: Settings | None = None) -> Path:
    """The cached influxd binary, or a RuntimeError telling how to build it."""
    s = settings or load_settings()
    path = influxd_path(s.cache_dir, s.influxdb_version)
    if not path.is_file():
        raise RuntimeError(
            f"influxd {s.influxdb_version} is not built ({path} is missing): run "
            "`edgewatch stack build-influxd` (or scripts/test.sh, which does it) first"
        )
    return path


@contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"edgewatch-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def running_influxdb(binary: Path) -> Iterator[InfluxFixture]:
    """A fresh influxd on a free port in a temp dir, bootstrapped; stopped and removed after."""
    with temp_dir("influxdb") as root:
        proc = InfluxdProcess(http_port=free_port(), data_dir=root / "influxdb", binary=binary)
        proc.start()
        try:
            creds_path = root / "credentials.json"
            creds = bootstrap(
                url=proc.url, org=DEFAULT_ORG, buckets=DEFAULT_BUCKETS, credentials_path=creds_path
            )
            yield InfluxFixture(
                url=proc.url,
                org=creds.org,
                admin_token=creds.admin_token,
                ingest_token=creds.ingest_token,
                dashboard_token=creds.dashboard_token,
                rollup_token=creds.rollup_token,
                bucket=DEFAULT_BUCKETS.raw,
                bucket_1m=DEFAULT_BUCKETS.m1,
                bucket_1h=DEFAULT_BUCKETS.h1,
                bucket_ops=DEFAULT_BUCKETS.ops,
                bucket_state=DEFAULT_BUCKETS.state,
                process=proc,
                org_id=creds.org_id,
                credentials_path=creds_path,
            )
        finally:
            proc.stop()


@contextmanager
def running_broker() -> Iterator[MosquittoProcess]:
    """A fresh Mosquitto on a free port in a temp dir; stopped and removed after."""
    with temp_dir("mosquitto") as root:
        proc = MosquittoProcess(port=free_port(), data_dir=root)
        proc.start()
        try:
            yield proc
        finally:
            proc.stop()


def unique_topic_root() -> str:
    """A topic root no other test uses, so tests never see each other's messages."""
    return f"t{secrets.token_hex(4)}"


def settings_for(
    broker: MosquittoProcess | None, influxdb: InfluxFixture | None, **overrides: object
) -> Settings:
    """Settings pointing at the fixture processes, with the admin token and a unique root."""
    root = unique_topic_root()
    values: dict[str, object] = {
        "mqtt_topic_root": root,
        "mqtt_client_id": f"edgewatch-ingest-{root}",
    }
    if broker is not None:
        values.update(mqtt_host=broker.host, mqtt_port=broker.port)
    if influxdb is not None:
        values.update(
            influxdb_url=influxdb.url,
            influxdb_org=influxdb.org,
            influxdb_token=influxdb.admin_token,
            ingest_token=influxdb.ingest_token,
            dashboard_token=influxdb.dashboard_token,
            rollup_token=influxdb.rollup_token,
            influxdb_bucket=influxdb.bucket,
            influxdb_bucket_1m=influxdb.bucket_1m,
            influxdb_bucket_1h=influxdb.bucket_1h,
            influxdb_bucket_ops=influxdb.bucket_ops,
            influxdb_bucket_state=influxdb.bucket_state,
        )
    values.update(overrides)
    return load_settings(**values)
