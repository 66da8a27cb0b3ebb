"""stack room: the `edgewatch stack ...` and `edgewatch demo` subcommands, and nothing else.

Parses arguments and prints; the local stack itself is `stack/local_stack.py`, the compose
secrets `stack/compose_init.py`, the demo `stack/demo.py`. Touches what those touch.
"""

from __future__ import annotations

import argparse
from typing import TypeAlias

from edgewatch.cli import add_command_group
from edgewatch.settings import load_settings
from stack.bootstrap import load_credentials
from stack.influxd import ensure_influxd
from stack.local_stack import (
    SERVICES,
    StackPaths,
    account_store,
    bootstrap_influxdb,
    dotenv_lines,
    load_service_passwords,
    reload_broker,
    restart_broker,
    say,
    stack_down,
    stack_status,
    stack_up,
)
from stack.processes import LOOPBACK
from stack.security import (
    create_certificates,
    device_account,
    gateway_account,
    issue_device_certificate,
    revoke_device_certificate,
)

EXIT_UNHEALTHY = 1

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def cmd_up(args: argparse.Namespace) -> int:
    stack_up(load_settings())
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    stack_down(load_settings())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    all_healthy = True
    for status in stack_status(load_settings()):
        all_healthy = all_healthy and status.healthy
        state = (
            "healthy"
            if status.healthy
            else ("unhealthy" if status.pid is not None else "not running")
        )
        print(
            f"{status.name:<10} pid {status.pid if status.pid is not None else '-':<8} "
            f"{LOOPBACK}:{status.port:<6} {state}"
        )
    return 0 if all_healthy else EXIT_UNHEALTHY


def cmd_env(args: argparse.Namespace) -> int:
    settings = load_settings()
    paths = StackPaths(settings.state_dir)
    lines = dotenv_lines(
        settings,
        load_credentials(paths.credentials),
        export=args.export,
        service=args.service,
        mqtt_passwords=load_service_passwords(paths),
        ca_path=paths.ca_cert if args.tls and paths.ca_cert.exists() else None,
    )
    for line in lines:
        print(line)
    return 0


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
    reload_broker(settings, paths)
    # The password is shown once and stored only as a hash.
    print(f"MQTT_USERNAME={account.username}")
    print(f"MQTT_PASSWORD={password}")
    print(f"MQTT_TLS_CA={paths.ca_cert}")
    print(f"MQTT_TLS_PASSWORD_PORT={settings.mqtt_tls_password_port}")
    return 0


def cmd_certs_issue(args: argparse.Namespace) -> int:
    settings = load_settings()
    paths = StackPaths(settings.state_dir)
    create_certificates(paths.pki_dir)
    issued = issue_device_certificate(paths.pki_dir, args.site, args.device)
    store = account_store(settings, paths)
    if issued.common_name not in {a.username for a in store.accounts()}:
        # The ACL is per account name: a certificate-only device gets an account whose
        # password nobody is told (it signs in by certificate alone).
        store.add(device_account(args.site, args.device))
        reload_broker(settings, paths)
    say(f"issued {issued.common_name} (serial {issued.serial:x}), key {issued.key} (mode 0600)")
    prefix = "export " if args.export else ""
    print(f"{prefix}MQTT_TLS_CERT={issued.certificate}")
    print(f"{prefix}MQTT_TLS_KEY={issued.key}")
    print(f"{prefix}MQTT_TLS_CA={issued.ca}")
    print(f"{prefix}MQTT_TLS_PORT={settings.mqtt_tls_port}")
    return 0


def cmd_certs_revoke(args: argparse.Namespace) -> int:
    settings = load_settings()
    paths = StackPaths(settings.state_dir)
    serial = revoke_device_certificate(paths.pki_dir, args.site, args.device)
    say(f"revoked the certificate of {args.site}/{args.device} (serial {serial:x})")
    restart_broker(settings, paths)
    return 0


def cmd_account_remove(args: argparse.Namespace) -> int:
    settings = load_settings()
    paths = StackPaths(settings.state_dir)
    if not account_store(settings, paths).remove(args.username):
        raise ValueError(f"no MQTT account {args.username!r}: see `edgewatch stack accounts list`")
    reload_broker(settings, paths)
    say(f"removed {args.username}")
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
    creds = bootstrap_influxdb(settings, paths, url=settings.influxdb_url)
    print(f"influxdb {creds.url} org {creds.org}: buckets and tokens in place")
    print(f"credentials {paths.credentials} (mode 0600)")
    return 0


def cmd_rebuild_shadow(args: argparse.Namespace) -> int:
    """Write the device shadow from the history (after an upgrade; safe to run again)."""
    from stack.shadow_rebuild import rebuild_shadow  # noqa: PLC0415  (keeps `--help` light)

    settings = load_settings()
    paths = StackPaths(settings.state_dir)
    if settings.influxdb_token is not None:
        token = settings.influxdb_token.get_secret_value()
    elif paths.credentials.is_file():
        token = load_credentials(paths.credentials).admin_token
    else:
        say(
            "no InfluxDB token: set INFLUXDB_V2_TOKEN to one that reads and writes the state "
            'bucket (e.g. `eval "$(edgewatch stack env --export)"`)'
        )
        return 2
    devices = rebuild_shadow(
        url=settings.influxdb_url,
        token=token,
        org=settings.influxdb_org,
        bucket_state=settings.influxdb_bucket_state,
        progress=say,
    )
    say(f"device shadow written for {devices:,} devices")
    return 0


def cmd_build_influxd(args: argparse.Namespace) -> int:
    settings = load_settings()
    path = ensure_influxd(settings.cache_dir, settings.influxdb_version, progress=say)
    say(f"influxd {settings.influxdb_version}: {path}")
    return 0


def cmd_compose_init(args: argparse.Namespace) -> int:
    from stack.compose_init import compose_init  # noqa: PLC0415  (keeps `--help` light)

    root = compose_init(
        load_settings(),
        broker_hostname=args.broker_hostname,
        mosquitto_uid=args.mosquitto_uid,
        service_uid=args.service_uid,
    )
    say(f"compose secrets ready under {root} (one directory per service)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from stack.demo import run_demo  # noqa: PLC0415  (keeps `edgewatch --help` light)

    return run_demo(
        load_settings(),
        sites=args.sites,
        devices=args.devices,
        seed=args.seed,
        duration_s=args.duration,
    )


def register(subparsers: SubParsers) -> None:
    """Add `edgewatch demo` and `edgewatch stack ...` (two top-level commands)."""
    register_demo(subparsers)
    register_stack(subparsers)


def register_demo(subparsers: SubParsers) -> None:
    """Add `edgewatch demo`: the whole system on localhost."""
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
    demo.set_defaults(func=cmd_demo)


def register_stack(subparsers: SubParsers) -> None:
    """Add `edgewatch stack up|down|status|env|accounts|bootstrap|compose-init|build-influxd`."""
    actions = add_command_group(
        subparsers,
        "stack",
        help="run Mosquitto and InfluxDB locally (loopback), bootstrapped for edgewatch",
        description="The local stack. Data, logs, pids and credentials live in "
        "EDGEWATCH_STATE_DIR; ports come from MQTT_PORT and INFLUXDB_V2_URL.",
    )
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
    _register_accounts(actions)
    _register_certs(actions)
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
    init.set_defaults(func=cmd_compose_init)
    actions.add_parser(
        "rebuild-shadow",
        help="write the device shadow (the fleet's current state) from the state bucket's "
        "history, once after upgrading from a version without it (safe to run again)",
    ).set_defaults(func=cmd_rebuild_shadow)
    actions.add_parser(
        "build-influxd", help="build and cache influxd (15-30 min once; no-op when cached)"
    ).set_defaults(func=cmd_build_influxd)


def _register_accounts(actions: SubParsers) -> None:
    account_actions = add_command_group(
        actions,
        "accounts",
        help="MQTT accounts: one per device or site gateway, with ACLs",
        description="MQTT accounts: one per device or site gateway, each with an ACL.",
    )
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


def _register_certs(actions: SubParsers) -> None:
    cert_actions = add_command_group(
        actions,
        "certs",
        help="device certificates: one X.509 client certificate per device, from the device CA",
        description="Device certificates for the broker's certificate listener (MQTT_TLS_PORT): "
        "the subject CN is the device's account name, so its ACL applies.",
    )
    issue = cert_actions.add_parser(
        "issue", help="make a key and a certificate for SITE DEVICE; prints where they are"
    )
    issue.add_argument("site")
    issue.add_argument("device")
    issue.add_argument(
        "--export", action="store_true", help='prefix "export " for eval "$(...)" in a shell'
    )
    issue.set_defaults(func=cmd_certs_issue)
    revoke = cert_actions.add_parser(
        "revoke",
        help="add the certificate of SITE DEVICE to the revocation list and restart the "
        "running broker so it reads it",
    )
    revoke.add_argument("site")
    revoke.add_argument("device")
    revoke.set_defaults(func=cmd_certs_revoke)
