"""stack room: the local stack itself, behind `edgewatch stack ...` and `edgewatch demo`.

Runs Mosquitto and influxd detached on loopback with everything under the state dir:
`run/` (pid files), `log/`, `mosquitto/`, `influxdb/`, `credentials.json`, `pki/` (the device
CA and the broker's certificate), `mqtt-accounts/` (broker accounts, password file, ACL).
Touches: those files and the processes it started itself (found again by pid file and /proc
cmdline). The CLI (`stack/cli.py`), the compose secrets (`compose_init.py`) and the demo
(`demo.py`) all call this module; it calls none of them.

The broker is secure by default: TLS with a device certificate on MQTT_TLS_PORT, TLS with a
password on MQTT_TLS_PASSWORD_PORT, and an authenticated plain listener on MQTT_PORT bound to
loopback for development. Every client needs an account; each account may
do only what its role needs (stack/security.py).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edgewatch.settings import Settings, env_name
from shared.private_file import write_private_file
from stack.bootstrap import BucketNames, StackCredentials, bootstrap
from stack.influxd import ensure_influxd, ensure_mosquitto
from stack.processes import (
    LOOPBACK,
    InfluxdProcess,
    ManagedProcess,
    MosquittoProcess,
    check_port_free,
    influxd_healthy,
    pid_alive,
    pid_cmdline,
    tcp_accepts,
    terminate_pid,
)
from stack.security import (
    FLEET_ACCOUNT,
    INGEST_ACCOUNT,
    AccountStore,
    MqttAccount,
    create_certificates,
    secure_listener_conf,
)

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost"})
SERVICES = ("admin", "ingest", "simulator", "dashboard", "rollup", "alerter")


def say(message: str) -> None:
    """A progress line for the operator, on stderr (stdout is for what scripts read)."""
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

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def ca_cert(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def accounts_dir(self) -> Path:
        return self.state_dir / "mqtt-accounts"

    @property
    def service_passwords(self) -> Path:
        return self.accounts_dir / "service-passwords.json"

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
            f"{env_name('influxdb_url')}={url} is not a loopback http URL: the local stack "
            "serves InfluxDB at http://127.0.0.1:<port>"
        )
    return parts.port or 8086


def bucket_names(settings: Settings) -> BucketNames:
    """The five buckets, as the settings name them."""
    return BucketNames(
        raw=settings.influxdb_bucket,
        m1=settings.influxdb_bucket_1m,
        h1=settings.influxdb_bucket_1h,
        ops=settings.influxdb_bucket_ops,
        state=settings.influxdb_bucket_state,
    )


def default_bucket_names() -> BucketNames:
    """The buckets of a stack with default settings (the test fixtures', the benchmarks')."""
    return bucket_names(Settings.model_construct())


def service_environment(
    settings: Settings,
    creds: StackCredentials,
    *,
    service: str = "admin",
    mqtt_passwords: dict[str, str] | None = None,
    ca_path: Path | None = None,
) -> dict[str, str]:
    """The settings one service of the running stack needs, by environment variable.

    `service` narrows the secrets to one role (least privilege): the ingest gets the ingest
    broker account and the write-only token, the simulator a broker account and no token, the
    dashboard its read/ops token and no broker account, the alerter its read/state/ops token
    and no broker account. `admin` gets the admin token.
    """
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
    passwords = mqtt_passwords or {}
    values: dict[str, object] = {
        "mqtt_host": settings.mqtt_host,
        "mqtt_port": settings.mqtt_port,
        "mqtt_tls_port": settings.mqtt_tls_port,
        "mqtt_tls_password_port": settings.mqtt_tls_password_port,
        "mqtt_topic_root": settings.mqtt_topic_root,
        "influxdb_url": settings.influxdb_url,
        "influxdb_org": creds.org,
        "influxdb_bucket": settings.influxdb_bucket,
        "influxdb_bucket_1m": settings.influxdb_bucket_1m,
        "influxdb_bucket_1h": settings.influxdb_bucket_1h,
        "influxdb_bucket_ops": settings.influxdb_bucket_ops,
        "influxdb_bucket_state": settings.influxdb_bucket_state,
    }
    if ca_path is not None:
        values["mqtt_tls_ca"] = ca_path
    mqtt_account = {"admin": INGEST_ACCOUNT, "ingest": INGEST_ACCOUNT, "simulator": FLEET_ACCOUNT}
    account = mqtt_account.get(service)
    if account is not None and account in passwords:
        values["mqtt_username"] = account
        values["mqtt_password"] = passwords[account]
    if service == "admin":
        values["influxdb_token"] = creds.admin_token
        values["ingest_token"] = creds.ingest_token
        values["dashboard_token"] = creds.dashboard_token
        values["rollup_token"] = creds.rollup_token
        if creds.alerter_token:
            values["alerter_token"] = creds.alerter_token
    elif service == "ingest":
        values["influxdb_token"] = creds.ingest_token
    elif service == "dashboard":
        values["influxdb_token"] = creds.dashboard_token
    elif service == "rollup":
        values["influxdb_token"] = creds.rollup_token
    elif service == "alerter" and creds.alerter_token:
        values["influxdb_token"] = creds.alerter_token
    return {env_name(field): str(value) for field, value in values.items()}


def dotenv_lines(
    settings: Settings,
    creds: StackCredentials,
    *,
    export: bool = False,
    service: str = "admin",
    mqtt_passwords: dict[str, str] | None = None,
    ca_path: Path | None = None,
) -> list[str]:
    """KEY=VALUE lines of `service_environment`; values shell-quoted only where they need it."""
    values = service_environment(
        settings, creds, service=service, mqtt_passwords=mqtt_passwords, ca_path=ca_path
    )
    prefix = "export " if export else ""
    return [f"{prefix}{key}={shlex.quote(value)}" for key, value in values.items()]


def account_store(settings: Settings, paths: StackPaths) -> AccountStore:
    return AccountStore(directory=paths.accounts_dir, root=settings.mqtt_topic_root)


def load_service_passwords(paths: StackPaths) -> dict[str, str]:
    try:
        data: dict[str, str] = json.loads(paths.service_passwords.read_text())
    except FileNotFoundError:
        return {}
    return data


def save_service_passwords(paths: StackPaths, passwords: dict[str, str]) -> None:
    write_private_file(paths.service_passwords, json.dumps(passwords, indent=2, sort_keys=True))


def ensure_mqtt_security(settings: Settings, paths: StackPaths) -> dict[str, str]:
    """The CA, the broker certificate and the service accounts; made once, then kept."""
    create_certificates(paths.pki_dir)
    store = account_store(settings, paths)
    passwords = load_service_passwords(paths)
    existing = {a.username for a in store.accounts()}
    for name, role in ((INGEST_ACCOUNT, "ingest"), (FLEET_ACCOUNT, "fleet")):
        if name not in passwords or name not in existing:
            passwords[name] = store.add(MqttAccount(name, role))  # type: ignore[arg-type]
    store.sync()
    save_service_passwords(paths, passwords)
    return passwords


def bootstrap_influxdb(settings: Settings, paths: StackPaths, *, url: str) -> StackCredentials:
    """Buckets and tokens in the InfluxDB at `url`; credentials kept 0600."""
    return bootstrap(
        url=url,
        org=settings.influxdb_org,
        buckets=bucket_names(settings),
        credentials_path=paths.credentials,
        admin_token=(
            settings.influxdb_token.get_secret_value() if settings.influxdb_token else None
        ),
    )


@dataclass(frozen=True)
class Service:
    """One process of the local stack and how to recognise it among all processes."""

    name: str
    port: int
    marker: str  # an argv element only our instance of this state dir has
    make: Callable[[], ManagedProcess]
    healthy: Callable[[], bool]


def stack_services(settings: Settings, paths: StackPaths, influxd: Path | None) -> list[Service]:
    mqtt_dir = paths.data_dir("mosquitto")
    influx_dir = paths.data_dir("influxd")
    influx_port = influxdb_port(settings.influxdb_url)
    url = f"http://{LOOPBACK}:{influx_port}"

    def make_mosquitto() -> ManagedProcess:
        for field in ("mqtt_tls_port", "mqtt_tls_password_port"):
            check_port_free(getattr(settings, field), host=LOOPBACK, env_var=env_name(field))
        store = account_store(settings, paths)
        return MosquittoProcess(
            port=settings.mqtt_port,
            data_dir=mqtt_dir,
            binary=ensure_mosquitto(progress=say),
            log_path=paths.log_file("mosquitto"),
            listener_conf=secure_listener_conf(
                tls_port=settings.mqtt_tls_port,
                password_tls_port=settings.mqtt_tls_password_port,
                plain_port=settings.mqtt_port,
                cert_dir=paths.pki_dir.resolve(),
                password_file=store.password_file.resolve(),
                acl_file=store.acl_file.resolve(),
            ),
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
            ports = [
                int(line.split()[1])
                for line in Path(service.marker).read_text().splitlines()
                if line.startswith("listener ")
            ]
        except OSError:
            return None
        # The plain listener is the one `up` probes; the TLS listener comes first in the file.
        return service.port if service.port in ports else (ports[-1] if ports else None)
    return None


def _start_service(paths: StackPaths, service: Service) -> None:
    """Start `service` unless our instance already runs (on the port the settings ask for)."""
    pid = running_pid(paths, service)
    if pid is not None:
        port = running_port(pid, service)
        if port not in (None, service.port):
            raise RuntimeError(
                f"{service.name} already runs on port {port} (pid {pid}) but the settings "
                f"ask for {service.port}: run `edgewatch stack down` first"
            )
        say(f"{service.name}: already running (pid {pid})")
        return
    proc = service.make()
    proc.start(detach=True)
    paths.pid_file(service.name).write_text(f"{proc.pid}\n")
    say(f"{service.name}: started (pid {proc.pid}), log {proc.log_path}")


def stack_up(settings: Settings) -> StackCredentials:
    """Start what is not running, bootstrap InfluxDB, print where everything is."""
    paths = StackPaths(settings.state_dir)
    ensure_mosquitto(progress=say)
    influxd = ensure_influxd(settings.cache_dir, settings.influxdb_version, progress=say)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    ensure_mqtt_security(settings, paths)
    for service in stack_services(settings, paths, influxd):
        _start_service(paths, service)
    creds = bootstrap_influxdb(
        settings, paths, url=f"http://{LOOPBACK}:{influxdb_port(settings.influxdb_url)}"
    )
    print(
        f"mosquitto  mqtts://{LOOPBACK}:{settings.mqtt_tls_port} (TLS, device certificate;"
        f" CA {paths.ca_cert})"
        f"  mqtts://{LOOPBACK}:{settings.mqtt_tls_password_port} (TLS, password)"
        f"  mqtt://{LOOPBACK}:{settings.mqtt_port} (loopback, development)"
        f"  data {paths.data_dir('mosquitto')}"
    )
    print(f"influxdb   {creds.url}  org {creds.org}  data {paths.data_dir('influxd')}")
    print(f"credentials {paths.credentials} (mode 0600)")
    print('environment: eval "$(edgewatch stack env --export)"')
    return creds


def stack_down(settings: Settings) -> None:
    """Stop what `stack_up` started; the data stays."""
    paths = StackPaths(settings.state_dir)
    for service in reversed(stack_services(settings, paths, None)):
        pid = running_pid(paths, service)
        if pid is None:
            say(f"{service.name}: not running")
            continue
        terminate_pid(pid)
        paths.pid_file(service.name).unlink(missing_ok=True)
        say(f"{service.name}: stopped (pid {pid}); data kept in {paths.data_dir(service.name)}")


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    port: int
    healthy: bool


def stack_status(settings: Settings) -> list[ServiceStatus]:
    paths = StackPaths(settings.state_dir)
    statuses = []
    for service in stack_services(settings, paths, None):
        pid = running_pid(paths, service)
        statuses.append(
            ServiceStatus(service.name, pid, service.port, pid is not None and service.healthy())
        )
    return statuses


def reload_broker(settings: Settings, paths: StackPaths) -> None:
    """Mosquitto rereads its password and ACL files on SIGHUP: no restart, no lost session."""
    for service in stack_services(settings, paths, None):
        if service.name != "mosquitto":
            continue
        pid = running_pid(paths, service)
        if pid is not None:
            os.kill(pid, signal.SIGHUP)
            say(f"mosquitto (pid {pid}) reloaded its accounts")


def restart_broker(settings: Settings, paths: StackPaths) -> None:
    """Mosquitto reads its CRL only when a listener starts: restart our running broker so a
    revocation takes effect. Persistent sessions and queued messages are on disk and kept."""
    for service in stack_services(settings, paths, None):
        if service.name != "mosquitto":
            continue
        pid = running_pid(paths, service)
        if pid is None:
            say("mosquitto is not running: it reads the new revocation list when it starts")
            return
        terminate_pid(pid)
        paths.pid_file(service.name).unlink(missing_ok=True)
        _start_service(paths, service)
        say(f"mosquitto restarted (was pid {pid}) to read the revocation list")
