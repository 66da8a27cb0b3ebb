"""stack room: `edgewatch stack up|down|status|env|bootstrap|build-influxd`.

Runs Mosquitto and influxd detached on loopback with everything under the state dir:
`run/` (pid files), `log/`, `mosquitto/`, `influxdb/`, `credentials.json`. Touches: those
files and the processes it started itself (found again by pid file and /proc cmdline).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edgewatch.settings import Settings, load_settings
from stack.bootstrap import BucketNames, StackCredentials, bootstrap, load_credentials
from stack.influxd import ensure_influxd, ensure_mosquitto
from stack.processes import (
    LOOPBACK,
    InfluxdProcess,
    ManagedProcess,
    MosquittoProcess,
    influxd_healthy,
    pid_alive,
    pid_cmdline,
    tcp_accepts,
    terminate_pid,
)

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost"})
EXIT_UNHEALTHY = 1


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class StackPaths:
    """Where `stack up` keeps everything; all under one state dir."""

    state_dir: Path

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    @property
    def credentials(self) -> Path:
        return self.state_dir / "credentials.json"

    def data_dir(self, service: str) -> Path:
        return self.state_dir / ("influxdb" if service == "influxd" else service)

    def pid_file(self, service: str) -> Path:
        return self.run_dir / f"{service}.pid"

    def log_file(self, service: str) -> Path:
        return self.log_dir / f"{service}.log"


def influxdb_port(url: str) -> int:
    """The port `stack up` serves InfluxDB on: the one in INFLUXDB_V2_URL, on loopback."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_NAMES:
        raise ValueError(
            f"INFLUXDB_V2_URL={url} is not a loopback http URL: the local stack serves "
            "InfluxDB at http://127.0.0.1:<port>"
        )
    return parts.port or 8086


def dotenv_lines(settings: Settings, creds: StackCredentials, *, export: bool = False) -> list[str]:
    """KEY=VALUE lines for the running stack; values shell-quoted only where they need it."""
    values = {
        "MQTT_HOST": settings.mqtt_host,
        "MQTT_PORT": str(settings.mqtt_port),
        "MQTT_TOPIC_ROOT": settings.mqtt_topic_root,
        "INFLUXDB_V2_URL": settings.influxdb_url,
        "INFLUXDB_V2_ORG": creds.org,
        "INFLUXDB_V2_BUCKET": settings.influxdb_bucket,
        "INFLUXDB_V2_TOKEN": creds.admin_token,
        "EDGEWATCH_INGEST_TOKEN": creds.ingest_token,
        "EDGEWATCH_DASHBOARD_TOKEN": creds.dashboard_token,
        "EDGEWATCH_BUCKET_1M": settings.influxdb_bucket_1m,
        "EDGEWATCH_BUCKET_1H": settings.influxdb_bucket_1h,
        "EDGEWATCH_BUCKET_OPS": settings.influxdb_bucket_ops,
    }
    prefix = "export " if export else ""
    return [f"{prefix}{key}={shlex.quote(value)}" for key, value in values.items()]


def bucket_names(settings: Settings) -> BucketNames:
    return BucketNames(
        raw=settings.influxdb_bucket,
        m1=settings.influxdb_bucket_1m,
        h1=settings.influxdb_bucket_1h,
        ops=settings.influxdb_bucket_ops,
    )


@dataclass(frozen=True)
class Service:
    """One process of the local stack and how to recognise it among all processes."""

    name: str
    port: int
    marker: str  # an argv element only our instance of this state dir has
    make: Callable[[], ManagedProcess]
    healthy: Callable[[], bool]


def _services(settings: Settings, paths: StackPaths, influxd: Path | None) -> list[Service]:
    mqtt_dir = paths.data_dir("mosquitto")
    influx_dir = paths.data_dir("influxd")
    influx_port = influxdb_port(settings.influxdb_url)
    url = f"http://{LOOPBACK}:{influx_port}"

    def make_mosquitto() -> ManagedProcess:
        return MosquittoProcess(
            port=settings.mqtt_port,
            data_dir=mqtt_dir,
            binary=ensure_mosquitto(progress=_say),
            log_path=paths.log_file("mosquitto"),
        )

    def make_influxd() -> ManagedProcess:
        if influxd is None:
            raise RuntimeError("influxd binary unknown")
        return InfluxdProcess(
            http_port=influx_port,
            data_dir=influx_dir,
            binary=influxd,
            log_path=paths.log_file("influxd"),
        )

    return [
        Service(
            name="mosquitto",
            port=settings.mqtt_port,
            marker=str(mqtt_dir / "mosquitto.conf"),
            make=make_mosquitto,
            healthy=lambda: tcp_accepts(LOOPBACK, settings.mqtt_port),
        ),
        Service(
            name="influxd",
            port=influx_port,
            marker=str(influx_dir / "influxd.bolt"),
            make=make_influxd,
            healthy=lambda: influxd_healthy(url),
        ),
    ]


def running_pid(paths: StackPaths, service: Service) -> int | None:
    """The pid of our running instance, from its pid file, checked against /proc."""
    pid_file = paths.pid_file(service.name)
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid_alive(pid) and service.marker in pid_cmdline(pid):
        return pid
    # Stale: the process is gone or the pid was reused by something that is not ours.
    pid_file.unlink(missing_ok=True)
    return None


def running_port(pid: int, service: Service) -> int | None:
    """The port a running instance actually serves, which may predate a settings change."""
    argv = pid_cmdline(pid)
    if service.name == "influxd" and "--http-bind-address" in argv:
        return int(argv[argv.index("--http-bind-address") + 1].rsplit(":", 1)[1])
    if service.name == "mosquitto":
        try:
            for line in Path(service.marker).read_text().splitlines():
                if line.startswith("listener "):
                    return int(line.split()[1])
        except OSError:
            return None
    return None


def cmd_up(args: argparse.Namespace) -> int:
    settings = load_settings()
    paths = StackPaths(settings.state_dir)
    ensure_mosquitto(progress=_say)
    influxd = ensure_influxd(settings.cache_dir, settings.influxdb_version, progress=_say)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    for service in _services(settings, paths, influxd):
        pid = running_pid(paths, service)
        if pid is not None:
            port = running_port(pid, service)
            if port not in (None, service.port):
                raise RuntimeError(
                    f"{service.name} already runs on port {port} (pid {pid}) but the settings "
                    f"ask for {service.port}: run `edgewatch stack down` first"
                )
            _say(f"{service.name}: already running (pid {pid})")
            continue
        proc = service.make()
        proc.start(detach=True)
        paths.pid_file(service.name).write_text(f"{proc.pid}\n")
        _say(f"{service.name}: started (pid {proc.pid}), log {proc.log_path}")
    creds = bootstrap(
        url=f"http://{LOOPBACK}:{influxdb_port(settings.influxdb_url)}",
        org=settings.influxdb_org,
        buckets=bucket_names(settings),
        credentials_path=paths.credentials,
        admin_token=(
            settings.influxdb_token.get_secret_value() if settings.influxdb_token else None
        ),
    )
    print(f"mosquitto  mqtt://{LOOPBACK}:{settings.mqtt_port}  data {paths.data_dir('mosquitto')}")
    print(f"influxdb   {creds.url}  org {creds.org}  data {paths.data_dir('influxd')}")
    print(f"credentials {paths.credentials} (mode 0600)")
    print('environment: eval "$(edgewatch stack env --export)"')
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    settings = load_settings()
    paths = StackPaths(settings.state_dir)
    for service in reversed(_services(settings, paths, None)):
        pid = running_pid(paths, service)
        if pid is None:
            _say(f"{service.name}: not running")
            continue
        terminate_pid(pid)
        paths.pid_file(service.name).unlink(missing_ok=True)
        _say(f"{service.name}: stopped (pid {pid}); data kept in {paths.data_dir(service.name)}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = load_settings()
    paths = StackPaths(settings.state_dir)
    all_healthy = True
    for service in _services(settings, paths, None):
        pid = running_pid(paths, service)
        healthy = pid is not None and service.healthy()
        all_healthy = all_healthy and healthy
        state = "healthy" if healthy else ("unhealthy" if pid is not None else "not running")
        print(
            f"{service.name:<10} pid {pid if pid is not None else '-':<8} "
            f"{LOOPBACK}:{service.port:<6} {state}"
        )
    return 0 if all_healthy else EXIT_UNHEALTHY


def cmd_env(args: argparse.Namespace) -> int:
    settings = load_settings()
    creds = load_credentials(StackPaths(settings.state_dir).credentials)
    for line in dotenv_lines(settings, creds, export=args.export):
        print(line)
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    """Bootstrap any InfluxDB (a container, a server): the same steps as `up`, no processes."""
    settings = load_settings()
    paths = StackPaths(settings.state_dir)
    creds = bootstrap(
        url=settings.influxdb_url,
        org=settings.influxdb_org,
        buckets=bucket_names(settings),
        credentials_path=paths.credentials,
        admin_token=(
            settings.influxdb_token.get_secret_value() if settings.influxdb_token else None
        ),
    )
    print(f"influxdb {creds.url} org {creds.org}: buckets, rollup tasks and tokens in place")
    print(f"credentials {paths.credentials} (mode 0600)")
    return 0


def cmd_build_influxd(args: argparse.Namespace) -> int:
    settings = load_settings()
    path = ensure_influxd(settings.cache_dir, settings.influxdb_version, progress=_say)
    _say(f"influxd {settings.influxdb_version}: {path}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "stack",
        help="run Mosquitto and InfluxDB locally (loopback), bootstrapped for edgewatch",
        description="The local stack. Data, logs, pids and credentials live in "
        "EDGEWATCH_STATE_DIR; ports come from MQTT_PORT and INFLUXDB_V2_URL.",
    )

    def usage(_args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    parser.set_defaults(func=usage)
    actions = parser.add_subparsers(title="actions", metavar="ACTION")
    actions.add_parser(
        "up", help="start Mosquitto and influxd, bootstrap InfluxDB (idempotent)"
    ).set_defaults(func=cmd_up)
    actions.add_parser("down", help="stop what `up` started; data is kept").set_defaults(
        func=cmd_down
    )
    actions.add_parser(
        "status", help="each service, its pid, address and health (exit 1 if unhealthy)"
    ).set_defaults(func=cmd_status)
    env = actions.add_parser("env", help="print the stack's settings as KEY=VALUE lines")
    env.add_argument(
        "--export", action="store_true", help='prefix "export " for eval "$(...)" in a shell'
    )
    env.set_defaults(func=cmd_env)
    actions.add_parser(
        "bootstrap",
        help="set up buckets, rollup tasks and tokens in the InfluxDB at INFLUXDB_V2_URL "
        "(idempotent; INFLUXDB_V2_TOKEN if it was set up elsewhere)",
    ).set_defaults(func=cmd_bootstrap)
    actions.add_parser(
        "build-influxd", help="build and cache influxd (15-30 min once; no-op when cached)"
    ).set_defaults(func=cmd_build_influxd)
