"""stack room: `edgewatch stack up|down|status|env|bootstrap|build-influxd`.

Runs Mosquitto and influxd detached on loopback with everything under the state dir:
`run/` (pid files), `log/`, `mosquitto/`, `influxdb/`, `credentials.json`, `pki/` (the device
CA and the broker's certificate), `mqtt-accounts/` (broker accounts, password file, ACL).
Touches: those files and the processes it started itself (found again by pid file and /proc
cmdline).

The broker is secure by default: TLS on MQTT_TLS_PORT, and an authenticated plain listener on
MQTT_PORT bound to loopback for development. Every client needs an account; each account may
do only what its role needs (stack/security.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
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
    device_account,
    gateway_account,
    secure_listener_conf,
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

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

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
            f"INFLUXDB_V2_URL={url} is not a loopback http URL: the local stack serves "
            "InfluxDB at http://127.0.0.1:<port>"
        )
    return parts.port or 8086


SERVICES = ("admin", "ingest", "simulator", "dashboard", "rollup")


def dotenv_lines(
    settings: Settings,
    creds: StackCredentials,
    *,
    export: bool = False,
    service: str = "admin",
    mqtt_passwords: dict[str, str] | None = None,
    ca_path: Path | None = None,
) -> list[str]:
    """KEY=VALUE lines for the running stack; values shell-quoted only where they need it.

    `service` narrows the secrets to one role (least privilege): the ingest gets the ingest
    broker account and the write-only token, the simulator a broker account and no token, the
    dashboard its read/ops token and no broker account. `admin` gets the admin token.
    """
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
    passwords = mqtt_passwords or {}
    values = {
        "MQTT_HOST": settings.mqtt_host,
        "MQTT_PORT": str(settings.mqtt_port),
        "MQTT_TLS_PORT": str(settings.mqtt_tls_port),
        "MQTT_TOPIC_ROOT": settings.mqtt_topic_root,
        "INFLUXDB_V2_URL": settings.influxdb_url,
        "INFLUXDB_V2_ORG": creds.org,
        "INFLUXDB_V2_BUCKET": settings.influxdb_bucket,
        "EDGEWATCH_BUCKET_1M": settings.influxdb_bucket_1m,
        "EDGEWATCH_BUCKET_1H": settings.influxdb_bucket_1h,
        "EDGEWATCH_BUCKET_OPS": settings.influxdb_bucket_ops,
    }
    if ca_path is not None:
        values["MQTT_TLS_CA"] = str(ca_path)
    mqtt_account = {"admin": INGEST_ACCOUNT, "ingest": INGEST_ACCOUNT, "simulator": FLEET_ACCOUNT}
    account = mqtt_account.get(service)
    if account is not None and account in passwords:
        values["MQTT_USERNAME"] = account
        values["MQTT_PASSWORD"] = passwords[account]
    if service == "admin":
        values["INFLUXDB_V2_TOKEN"] = creds.admin_token
        values["EDGEWATCH_INGEST_TOKEN"] = creds.ingest_token
        values["EDGEWATCH_DASHBOARD_TOKEN"] = creds.dashboard_token
        values["EDGEWATCH_ROLLUP_TOKEN"] = creds.rollup_token
    elif service == "ingest":
        values["INFLUXDB_V2_TOKEN"] = creds.ingest_token
    elif service == "dashboard":
        values["INFLUXDB_V2_TOKEN"] = creds.dashboard_token
    elif service == "rollup":
        values["INFLUXDB_V2_TOKEN"] = creds.rollup_token
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
    fd = os.open(paths.service_passwords, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(passwords, handle, indent=2, sort_keys=True)
    return passwords


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
        check_port_free(settings.mqtt_tls_port, host=LOOPBACK, env_var="MQTT_TLS_PORT")
        store = account_store(settings, paths)
        return MosquittoProcess(
            port=settings.mqtt_port,
            data_dir=mqtt_dir,
            binary=ensure_mosquitto(progress=_say),
            log_path=paths.log_file("mosquitto"),
            listener_conf=secure_listener_conf(
                tls_port=settings.mqtt_tls_port,
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


def cmd_up(args: argparse.Namespace) -> int:
    stack_up(load_settings())
    return 0


def stack_up(settings: Settings) -> StackCredentials:
    """Start what is not running, bootstrap InfluxDB, print where everything is."""
    paths = StackPaths(settings.state_dir)
    ensure_mosquitto(progress=_say)
    influxd = ensure_influxd(settings.cache_dir, settings.influxdb_version, progress=_say)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    ensure_mqtt_security(settings, paths)
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
    print(
        f"mosquitto  mqtts://{LOOPBACK}:{settings.mqtt_tls_port} (TLS, CA {paths.pki_dir}/ca.crt)"
        f"  mqtt://{LOOPBACK}:{settings.mqtt_port} (loopback, development)"
        f"  data {paths.data_dir('mosquitto')}"
    )
    print(f"influxdb   {creds.url}  org {creds.org}  data {paths.data_dir('influxd')}")
    print(f"credentials {paths.credentials} (mode 0600)")
    print('environment: eval "$(edgewatch stack env --export)"')
    return creds


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
    paths = StackPaths(settings.state_dir)
    creds = load_credentials(paths.credentials)
    ca = paths.pki_dir / "ca.crt"
    lines = dotenv_lines(
        settings,
        creds,
        export=args.export,
        service=args.service,
        mqtt_passwords=load_service_passwords(paths),
        ca_path=ca if args.tls and ca.exists() else None,
    )
    for line in lines:
        print(line)
    return 0


def _reload_broker(settings: Settings, paths: StackPaths) -> None:
    """Mosquitto rereads its password and ACL files on SIGHUP: no restart, no lost session."""
    for service in _services(settings, paths, None):
        if service.name != "mosquitto":
            continue
        pid = running_pid(paths, service)
        if pid is not None:
            os.kill(pid, signal.SIGHUP)
            _say(f"mosquitto (pid {pid}) reloaded its accounts")


def cmd_account_add(args: argparse.Namespace) -> int:
    settings = load_settings()
    paths = StackPaths(settings.state_dir)
    create_certificates(paths.pki_dir)
    account = (
        gateway_account(args.site)
        if args.device is None
        else device_account(args.site, args.device)
    )
    password = account_store(settings, paths).add(account)
    _reload_broker(settings, paths)
    # The password is shown once and stored only as a hash.
    print(f"MQTT_USERNAME={account.username}")
    print(f"MQTT_PASSWORD={password}")
    print(f"MQTT_TLS_CA={paths.pki_dir / 'ca.crt'}")
    print(f"MQTT_TLS_PORT={settings.mqtt_tls_port}")
    return 0


def cmd_account_remove(args: argparse.Namespace) -> int:
    settings = load_settings()
    paths = StackPaths(settings.state_dir)
    if not account_store(settings, paths).remove(args.username):
        raise ValueError(f"no MQTT account {args.username!r}: see `edgewatch stack accounts list`")
    _reload_broker(settings, paths)
    _say(f"removed {args.username}")
    return 0


def cmd_account_list(args: argparse.Namespace) -> int:
    settings = load_settings()
    for account in account_store(settings, StackPaths(settings.state_dir)).accounts():
        print(f"{account.username:<40} {account.role:<8} {account.scope}")
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
    print(f"influxdb {creds.url} org {creds.org}: buckets and tokens in place")
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
    demo = subparsers.add_parser(
        "demo",
        help="the whole system on localhost: stack, ingest, simulator and dashboard",
        description="Starts the local stack (if needed), then the ingest, the fleet simulator "
        "and the dashboard, each with only its own credentials. Ctrl-C stops those three; "
        "the stack keeps running until `edgewatch stack down`.",
    )
    demo.add_argument("--sites", type=int, default=4, help="simulated sites (default 4)")
    demo.add_argument("--devices", type=int, default=5, help="devices per site (default 5)")
    demo.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.set_defaults(func=_run_demo)
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
    env.add_argument(
        "--service",
        choices=SERVICES,
        default="admin",
        help="only the secrets this service needs (default: admin, everything)",
    )
    env.add_argument(
        "--tls", action="store_true", help="connect over TLS: adds MQTT_TLS_CA (the device CA)"
    )
    env.set_defaults(func=cmd_env)
    accounts = actions.add_parser(
        "accounts", help="MQTT accounts: one per device or site gateway, with ACLs"
    )
    accounts.set_defaults(func=usage)
    account_actions = accounts.add_subparsers(title="actions", metavar="ACTION")
    add = account_actions.add_parser(
        "add",
        help="create a device account (SITE DEVICE) or a site gateway account (SITE); "
        "prints its password once",
    )
    add.add_argument("site")
    add.add_argument("device", nargs="?")
    add.set_defaults(func=cmd_account_add)
    remove = account_actions.add_parser("remove", help="delete an account by user name")
    remove.add_argument("username")
    remove.set_defaults(func=cmd_account_remove)
    account_actions.add_parser("list", help="every account, its role and scope").set_defaults(
        func=cmd_account_list
    )
    actions.add_parser(
        "bootstrap",
        help="set up buckets and tokens in the InfluxDB at INFLUXDB_V2_URL "
        "(idempotent; INFLUXDB_V2_TOKEN if it was set up elsewhere)",
    ).set_defaults(func=cmd_bootstrap)
    init = actions.add_parser(
        "compose-init",
        help="docker compose: make the CA, broker accounts, InfluxDB tokens and one secrets "
        "directory per service (run by the secrets-init service)",
    )
    init.add_argument("--broker-hostname", default="mosquitto")
    init.add_argument("--mosquitto-uid", type=int, default=None)
    init.add_argument("--service-uid", type=int, default=None)
    init.set_defaults(func=_run_compose_init)
    actions.add_parser(
        "build-influxd", help="build and cache influxd (15-30 min once; no-op when cached)"
    ).set_defaults(func=cmd_build_influxd)


def _run_demo(args: argparse.Namespace) -> int:
    from stack.demo import run_demo  # noqa: PLC0415  (keeps `edgewatch --help` light)

    return run_demo(
        load_settings(),
        sites=args.sites,
        devices=args.devices,
        seed=args.seed,
        duration_s=args.duration,
    )


def _run_compose_init(args: argparse.Namespace) -> int:
    from stack.compose_init import compose_init  # noqa: PLC0415

    root = compose_init(
        load_settings(),
        broker_hostname=args.broker_hostname,
        mosquitto_uid=args.mosquitto_uid,
        service_uid=args.service_uid,
    )
    _say(f"compose secrets ready under {root} (one directory per service)")
    return 0
