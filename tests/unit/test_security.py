"""MQTT security material: password hashes Mosquitto accepts, ACLs that grant only a role."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from cryptography import x509

from stack.security import (
    AccountStore,
    MqttAccount,
    acl_text,
    create_certificates,
    device_account,
    gateway_account,
    issue_device_certificate,
    password_line,
    revoke_device_certificate,
    revoked_serials,
    secure_listener_conf,
)


def test_password_line_is_mosquitto_pbkdf2_sha512() -> None:
    salt = b"0123456789ab"
    line = password_line("plant-a.cam-1", "s3cret", salt=salt)
    user, rest = line.split(":", 1)
    _, scheme, iterations, salt_b64, hash_b64 = rest.split("$")
    assert user == "plant-a.cam-1"
    assert (scheme, iterations) == ("7", "101")
    assert base64.b64decode(salt_b64) == salt
    assert base64.b64decode(hash_b64) == hashlib.pbkdf2_hmac("sha512", b"s3cret", salt, 101)


def test_acl_grants_each_role_only_its_topics() -> None:
    text = acl_text(
        "edgewatch",
        [
            device_account("plant-a", "cam-1"),
            gateway_account("plant-b"),
            MqttAccount("ingest", "ingest"),
        ],
    )
    assert "user plant-a.cam-1\ntopic write edgewatch/plant-a/cam-1/+" in text
    assert "user gw.plant-b\ntopic write edgewatch/plant-b/+/+" in text
    assert "user ingest\ntopic read edgewatch/#" in text
    # No account may both read and write, and none reads but the ingest.
    assert text.count("topic read") == 1


def test_invalid_names_are_refused() -> None:
    with pytest.raises(ValueError, match="not a valid"):
        device_account("plant a", "cam-1")


def test_account_store_keeps_only_hashes(tmp_path: Path) -> None:
    store = AccountStore(directory=tmp_path, root="edgewatch")
    password = store.add(device_account("plant-a", "cam-1"))
    assert len(password) >= 20
    assert password not in store.registry.read_text()
    assert password not in store.password_file.read_text()
    assert store.password_file.stat().st_mode & 0o077 == 0
    assert [a.username for a in store.accounts()] == ["plant-a.cam-1"]
    assert store.remove("plant-a.cam-1")
    assert "plant-a.cam-1" not in store.acl_file.read_text()


def test_certificates_chain_to_the_ca(tmp_path: Path) -> None:
    create_certificates(tmp_path)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / "server.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    before = (tmp_path / "ca.crt").read_bytes()
    create_certificates(tmp_path)  # idempotent: an existing CA is kept
    assert (tmp_path / "ca.crt").read_bytes() == before


def test_the_tls_listener_requires_a_certificate_and_passwords_get_their_own(
    tmp_path: Path,
) -> None:
    conf = secure_listener_conf(
        tls_port=8883,
        password_tls_port=8884,
        plain_port=1883,
        cert_dir=tmp_path,
        password_file=tmp_path / "passwd",
        acl_file=tmp_path / "acl",
    )
    blocks = conf.split("\n\n")
    cert_block = next(b for b in blocks if b.startswith("listener 8883"))
    assert "require_certificate true" in cert_block
    assert "use_identity_as_username true" in cert_block
    assert f"crlfile {tmp_path / 'crl.pem'}" in cert_block
    password_block = next(b for b in blocks if b.startswith("listener 8884"))
    assert "require_certificate" not in password_block
    assert "tls_version tlsv1.2" in password_block


def test_a_device_certificate_names_the_device_and_revocation_lists_it(tmp_path: Path) -> None:
    create_certificates(tmp_path)
    assert revoked_serials(tmp_path) == set()  # an empty CRL from the start
    issued = issue_device_certificate(tmp_path, "plant-a", "cam-1")
    cert = x509.load_pem_x509_certificate(issued.certificate.read_bytes())
    cn = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    assert cn == "plant-a.cam-1" == device_account("plant-a", "cam-1").username
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert issued.key.stat().st_mode & 0o077 == 0
    serial = revoke_device_certificate(tmp_path, "plant-a", "cam-1")
    revoke_device_certificate(tmp_path, "plant-a", "cam-1")  # twice: listed once
    crl = x509.load_pem_x509_crl((tmp_path / "crl.pem").read_bytes())
    assert [entry.serial_number for entry in crl] == [serial] == [cert.serial_number]
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a valid"):
        issue_device_certificate(tmp_path, "plant-a", "../etc")
    with pytest.raises(FileNotFoundError, match="certs issue plant-a cam-2"):
        revoke_device_certificate(tmp_path, "plant-a", "cam-2")
