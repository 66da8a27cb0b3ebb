"""MQTT security material for the local stack: a device CA, server certificates, per-account
passwords and ACLs.

Room: `stack`. Touches only files in the directory it is given. Pure text builders
(`acl_text`, `password_line`, `secure_listener_conf`) are separate from the writers so they
are tested without a broker; the integration tests then check a real Mosquitto enforces them.

Device identity by certificate: `issue_device_certificate` signs a client certificate whose
subject CN is the device's account name (`site.device`); the broker's certificate listener
requires one (`require_certificate`, `use_identity_as_username`), so the CN is the user name
and the same per-device ACL applies; `revoke_device_certificate` adds its serial to the CRL
the listener reads (`crlfile`). Passwords stay on a separate TLS listener.

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
CRL_FILE = "crl.pem"
DEVICE_CERT_DIR = "devices"
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
    password_tls_port: int | None = None,
    bind: str = "127.0.0.1",
) -> str:
    """Listener lines. `tls_port`: TLS 1.2+ with a client certificate from the device CA,
    required and checked against the CRL, its CN taken as the user name (so the ACL applies
    as to a password login). `password_tls_port`: TLS with user name and password, for
    devices that cannot hold a certificate (and the services). `plain_port`: plain text on
    loopback, still authenticated, for development."""
    server_tls = [
        f"cafile {cert_dir / 'ca.crt'}",
        f"certfile {cert_dir / 'server.crt'}",
        f"keyfile {cert_dir / 'server.key'}",
        "tls_version tlsv1.2",
    ]
    lines = [
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {password_file}",
        f"acl_file {acl_file}",
        "",
        f"listener {tls_port} {bind}",
        *server_tls,
        "require_certificate true",
        "use_identity_as_username true",
        f"crlfile {cert_dir / CRL_FILE}",
    ]
    if password_tls_port is not None:
        lines += ["", f"listener {password_tls_port} {bind}", *server_tls]
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
        ensure_crl(cert_dir)  # a stack made before device certificates has none yet
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
    ensure_crl(cert_dir)


def _load_ca(cert_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert = x509.load_pem_x509_certificate((cert_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((cert_dir / "ca.key").read_bytes(), None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):  # pragma: no cover - we made it
        raise TypeError(f"{cert_dir / 'ca.key'} is not the EC key this stack makes")
    return ca_cert, ca_key


def _write_crl(cert_dir: Path, revoked: Sequence[x509.RevokedCertificate]) -> None:
    """The CRL, signed by the CA. Its next update is far out: the broker refuses every client
    once its CRL has expired, and this CRL changes only when `revoke` rewrites it."""
    ca_cert, ca_key = _load_ca(cert_dir)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=CERT_VALIDITY_DAYS))
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(ca_key, hashes.SHA256())
    (cert_dir / CRL_FILE).write_bytes(crl.public_bytes(serialization.Encoding.PEM))


def ensure_crl(cert_dir: Path) -> None:
    """An empty CRL when there is none yet (the certificate listener needs one to start)."""
    if not (cert_dir / CRL_FILE).exists():
        _write_crl(cert_dir, [])


@dataclass(frozen=True, slots=True)
class DeviceCertificate:
    certificate: Path
    key: Path
    ca: Path
    common_name: str
    serial: int


def device_cert_paths(cert_dir: Path, site: str, device: str) -> tuple[Path, Path]:
    name = device_account(site, device).username
    return (
        cert_dir / DEVICE_CERT_DIR / f"{name}.crt",
        cert_dir / DEVICE_CERT_DIR / f"{name}.key",
    )


def issue_device_certificate(
    cert_dir: Path, site: str, device: str, *, validity_days: int = CERT_VALIDITY_DAYS
) -> DeviceCertificate:
    """A key and a client certificate for one device, signed by the device CA. Its subject
    CN is the device's account name, which the broker takes as the user name. Issuing again
    makes a new key and certificate (revoke the old one if it may be in wrong hands)."""
    account = device_account(site, device)  # refuses names outside the contract
    ca_cert, ca_key = _load_ca(cert_dir)
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, account.username)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = device_cert_paths(cert_dir, site, device)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    write_private_file(key_path, _key_pem(key))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return DeviceCertificate(
        cert_path, key_path, cert_dir / "ca.crt", account.username, certificate.serial_number
    )


def revoke_device_certificate(cert_dir: Path, site: str, device: str) -> int:
    """Add the device's current certificate to the CRL; returns its serial. The broker reads
    the CRL when it starts: restart it (the local stack's `certs revoke` does)."""
    cert_path, _ = device_cert_paths(cert_dir, site, device)
    if not cert_path.exists():
        raise FileNotFoundError(
            f"no certificate was issued for {site}/{device} here ({cert_path}): "
            f"`edgewatch stack certs issue {site} {device}` makes one"
        )
    serial = x509.load_pem_x509_certificate(cert_path.read_bytes()).serial_number
    ensure_crl(cert_dir)
    current = x509.load_pem_x509_crl((cert_dir / CRL_FILE).read_bytes())
    revoked = list(current)
    if all(entry.serial_number != serial for entry in revoked):
        revoked.append(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(dt.datetime.now(dt.UTC))
            .build()
        )
    _write_crl(cert_dir, revoked)
    return serial


def revoked_serials(cert_dir: Path) -> set[int]:
    if not (cert_dir / CRL_FILE).exists():
        return set()
    return {e.serial_number for e in x509.load_pem_x509_crl((cert_dir / CRL_FILE).read_bytes())}


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
