"""`edgewatch stack compose-init`: the secrets of the docker compose deployment, made once.

Room: `stack`. Runs in a one-shot container that alone holds the InfluxDB admin token. It
makes the device CA and the broker's certificate, the broker accounts and ACL, bootstraps
InfluxDB (buckets, least-privilege tokens), and writes one directory per
service under `<state>/compose/`, each holding only that service's secrets:

- `mosquitto/`: ca.crt, server.crt, server.key, crl.pem, passwd, acl, health.password
- `ingest/`, `simulator/`, `dashboard/`, `alerter/`: `env` (sourced by the image's entry point)
  and ca.crt

Compose mounts each directory into its own service only (volume subpaths), so no service but
this one sees the admin token, and none sees another's credentials. Idempotent: a re-run
keeps the CA, the accounts and the tokens.
"""

from __future__ import annotations

from pathlib import Path

from edgewatch.settings import Settings
from shared.private_file import write_private_file
from stack.bootstrap import bootstrap
from stack.local_stack import (
    StackPaths,
    account_store,
    bucket_names,
    dotenv_lines,
    ensure_mqtt_security,
    save_service_passwords,
)
from stack.security import CRL_FILE, MqttAccount, create_certificates

HEALTH_ACCOUNT = "health"
SERVICE_CA_PATH = "/run/edgewatch/ca.crt"


def _write(path: Path, text: str, *, uid: int | None, mode: int = 0o600) -> None:
    write_private_file(path, text, mode=mode, owner_uid=uid)


def _copy(source: Path, target: Path, *, uid: int | None, mode: int) -> None:
    _write(target, source.read_text(), uid=uid, mode=mode)


def compose_init(
    settings: Settings,
    *,
    broker_hostname: str,
    mosquitto_uid: int | None,
    service_uid: int | None,
) -> Path:
    """Make every secret of the compose deployment; returns the per-service root."""
    paths = StackPaths(settings.state_dir)
    create_certificates(paths.pki_dir, hostnames=(broker_hostname, "localhost", "127.0.0.1"))
    passwords = ensure_mqtt_security(settings, paths)
    store = account_store(settings, paths)
    if HEALTH_ACCOUNT not in passwords:
        passwords[HEALTH_ACCOUNT] = store.add(MqttAccount(HEALTH_ACCOUNT, "monitor"))
        save_service_passwords(paths, passwords)
    creds = bootstrap(
        url=settings.influxdb_url,
        org=settings.influxdb_org,
        buckets=bucket_names(settings),
        credentials_path=paths.credentials,
        admin_token=settings.token_value(),
    )
    root = paths.state_dir / "compose"
    broker = root / "mosquitto"
    for name, mode in (
        ("ca.crt", 0o644),
        ("server.crt", 0o644),
        ("server.key", 0o600),
        (CRL_FILE, 0o644),  # the certificate listener's revocation list
    ):
        _copy(paths.pki_dir / name, broker / name, uid=mosquitto_uid, mode=mode)
    _copy(store.password_file, broker / "passwd", uid=mosquitto_uid, mode=0o600)
    _copy(store.acl_file, broker / "acl", uid=mosquitto_uid, mode=0o600)
    _write(broker / "health.password", passwords[HEALTH_ACCOUNT], uid=mosquitto_uid)
    for service in ("ingest", "simulator", "dashboard", "rollup", "alerter"):
        lines = dotenv_lines(
            settings,
            creds,
            service=service,
            mqtt_passwords=passwords,
            ca_path=Path(SERVICE_CA_PATH) if service in ("ingest", "simulator") else None,
        )
        _write(root / service / "env", "\n".join(lines) + "\n", uid=service_uid)
        _copy(paths.ca_cert, root / service / "ca.crt", uid=service_uid, mode=0o644)
    # The admin token stays in credentials.json, which no other service mounts.
    return root
