"""MQTT security material for the local stack: a device CA, server certificates, per-account
passwords and ACLs.

Room: `stack`. Touches only files in the directory it is given. Pure text builders
(`acl_text`, `password_line`, `secure_listener_conf`) are separate from the writers so they
are tested without a broker; the integration tests then check a real Mosquitto enforces them.

Accounts and what they may do (zero trust: nobody gets more than their role needs):
- device `site.device`: publish under `{root}/{site}/{device}/` only, subscribe to nothing.
- gateway `gw.site`: publish for every device of one site (a site gateway relays them).
- fleet `fleet` (development and the simulator only): publish for every device.
- ingest `ingest`: subscribe to `{root}/#` (shared subscriptions included), publish nothing.
- monitor (a container healthcheck): may connect, and nothing else.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgewatch.contract import is_valid_name
from shared.private_file import write_private_file

# Mosquitto 2's own password hash: PBKDF2-SHA512, written as $7$<iterations>$<salt>$<hash>.
MOSQUITTO_HASH_ITERATIONS = 101
CERT_VALIDITY_DAYS = 825
INGEST_ACCOUNT = "ingest"
FLEET_ACCOUNT = "fleet"

Role = Literal["device", "gateway", "fleet", "ingest", "monitor"]


@dataclass(frozen=True, slots=True)
class MqttAccount:
    """One broker account. `scope` is `site/device` (device), `site` (gateway) or empty."""

    username: str
    role: Role
    scope: str = ""


def device_username(site: str, device: str) -> str:
    """The account name of a device: `site.device` (dots are allowed in neither's charset
    start, so the split is unambiguous only with the scope stored beside it)."""
    return f"{site}.{device}"


def device_account(site: str, device: str) -> MqttAccount:
    if not (is_valid_name(site) and is_valid_name(device)):
        raise ValueError(f"{site!r}/{device!r} is not a valid site/device name")
    return MqttAccount(device_username(site, device), "device", f"{site}/{device}")


def gateway_account(site: str) -> MqttAccount:
    if not is_valid_name(site):
        raise ValueError(f"{site!r} is not a valid site name")
    return MqttAccount(f"gw.{site}", "gateway", site)


def password_line(username: str, password: str, *, salt: bytes | None = None) -> str:
    """One line of a Mosquitto 2 password file, hashed as `mosquitto_passwd` would."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, MOSQUITTO_HASH_ITERATIONS)
    return (
        f"{username}:$7${MOSQUITTO_HASH_ITERATIONS}$"
        f"{base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    )


def acl_text(root: str, accounts: Iterable[MqttAccount]) -> str:
    """A Mosquitto ACL file. Anything not granted is denied."""
    blocks = ["# edgewatch ACL: written by `edgewatch stack`; anything not granted is denied."]
    for account in accounts:
        if account.role == "device":
            grant = [f"topic write {root}/{account.scope}/+"]
        elif account.role == "gateway":
            grant = [f"topic write {root}/{account.scope}/+/+"]
        elif account.role == "fleet":
            grant = [f"topic write {root}/+/+/+"]
        elif account.role == "ingest":
            grant = [f"topic read {root}/#"]
        else:
            grant = []
        blocks.append("\n".join([f"user {account.username}", *grant]))
    return "\n\n".join(blocks) + "\n"


def secure_listener_conf(
    *,
    tls_port: int,
    plain_port: int | None,
    cert_dir: Path,
    password_file: Path,
    acl_file: Path,
) -> str:
    """Listener lines: TLS (1.2 at least) for everyone, plain text on loopback only."""
    lines = [
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {password_file}",
        f"acl_file {acl_file}",
        "",
        f"listener {tls_port} 127.0.0.1",
        f"cafile {cert_dir / 'ca.crt'}",
        f"certfile {cert_dir / 'server.crt'}",
        f"keyfile {cert_dir / 'server.key'}",
        "tls_version tlsv1.2",
    ]
    if plain_port is not None:
        # Development only: loopback, and still authenticated.
        lines += ["", f"listener {plain_port} 127.0.0.1"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- certificates


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def create_certificates(
    cert_dir: Path, *, hostnames: Sequence[str] = ("localhost", "127.0.0.1")
) -> None:
    """A device CA and a server certificate signed by it; kept when they already exist."""
    if (cert_dir / "ca.crt").exists() and (cert_dir / "server.crt").exists():
        return
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgewatch device CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write_private_file(cert_dir / "ca.key", _key_pem(ca_key))
    write_private_file(cert_dir / "server.key", _key_pem(server_key))
    (cert_dir / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (cert_dir / "server.crt").write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))


# ---------------------------------------------------------------------------- account store


class AccountStore:
    """The broker's accounts: a JSON registry of roles beside Mosquitto's password and ACL
    files. Passwords are returned once, when made, and stored only as hashes."""

    def __init__(self, *, directory: Path, root: str) -> None:
        self.directory = directory
        self.root = root
        self.registry = directory / "accounts.json"
        self.password_file = directory / "passwd"
        self.acl_file = directory / "acl"

    def _load(self) -> dict[str, dict[str, str]]:
        if not self.registry.exists():
            return {}
        data: dict[str, dict[str, str]] = json.loads(self.registry.read_text())
        return data

    def accounts(self) -> list[MqttAccount]:
        return [
            MqttAccount(name, entry["role"], entry.get("scope", ""))  # type: ignore[arg-type]
            for name, entry in sorted(self._load().items())
        ]

    def add(self, account: MqttAccount, password: str | None = None) -> str:
        """Create or replace an account; returns its password (generated if not given)."""
        password = password or secrets.token_urlsafe(18)
        data = self._load()
        data[account.username] = {
            "role": account.role,
            "scope": account.scope,
            "hash": password_line(account.username, password).split(":", 1)[1],
        }
        self._save(data)
        return password

    def remove(self, username: str) -> bool:
        data = self._load()
        if data.pop(username, None) is None:
            return False
        self._save(data)
        return True

    def sync(self) -> None:
        """Rewrite the password and ACL files from the registry (e.g. for a new topic root)."""
        self._save(self._load())

    def _save(self, data: dict[str, dict[str, str]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_private_file(self.registry, json.dumps(data, indent=2, sort_keys=True).encode())
        passwd = "".join(f"{name}:{entry['hash']}\n" for name, entry in sorted(data.items()))
        write_private_file(self.password_file, passwd.encode())
        accounts = [
            MqttAccount(name, entry["role"], entry.get("scope", ""))  # type: ignore[arg-type]
            for name, entry in sorted(data.items())
        ]
        write_private_file(self.acl_file, acl_text(self.root, accounts).encode())
