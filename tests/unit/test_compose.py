"""docker-compose.yml stays runnable: pinned images, healthchecks, real subcommands, no secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from edgewatch.settings import INFLUXDB_VERSION

ROOT = Path(__file__).resolve().parents[2]
# The rooms register their own subcommands (some are written later), so the names a compose
# command may use are listed here rather than read from the parser.
SUBCOMMANDS = {
    "stack",
    "ingest",
    "rollup",
    "simulate",
    "agent",
    "dashboard",
    "alerter",
    "demo",
    "bench",
}
SECRET_KEYS = ("TOKEN", "PASSWORD", "SECRET")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def test_every_part_of_the_system_is_a_service(services: dict[str, dict[str, Any]]) -> None:
    assert {"mosquitto", "influxdb", "ingest", "simulator", "dashboard", "alerter"} <= set(services)


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        image = svc.get("image")
        if image is None:
            assert "build" in svc, f"{name}: neither image nor build"
            continue
        assert ":" in image, f"{name}: image {image} has no tag"
        tag = image.rsplit(":", 1)[1]
        assert tag and tag != "latest", f"{name}: image {image} is not pinned"
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2.0.")


def test_influxdb_tag_equals_the_version_everything_else_runs(
    services: dict[str, dict[str, Any]],
) -> None:
    assert services["influxdb"]["image"] == f"influxdb:{INFLUXDB_VERSION}"


def _healthy_dependencies(svc: dict[str, Any]) -> list[str]:
    deps = svc.get("depends_on") or {}
    assert isinstance(deps, dict), "depends_on must name conditions"
    return [name for name, cond in deps.items() if cond.get("condition") == "service_healthy"]


def test_every_service_is_health_checked_or_waits_for_a_healthy_one(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, svc in services.items():
        assert "healthcheck" in svc or _healthy_dependencies(svc), name
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert cond["condition"] in {"service_healthy", "service_completed_successfully"}
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}, which has none"


def test_python_services_wait_for_what_they_use(services: dict[str, dict[str, Any]]) -> None:
    assert {"mosquitto", "influxdb"} <= set(_healthy_dependencies(services["ingest"]))
    assert "mosquitto" in _healthy_dependencies(services["simulator"])
    assert "influxdb" in _healthy_dependencies(services["dashboard"])
    assert "influxdb" in _healthy_dependencies(services["alerter"])


def test_commands_name_real_edgewatch_subcommands(services: dict[str, dict[str, Any]]) -> None:
    expected = {
        "ingest": "ingest",
        "rollup": "rollup",
        "simulator": "simulate",
        "dashboard": "dashboard",
        "alerter": "alerter",
    }
    for name, subcommand in expected.items():
        assert services[name]["command"][0] == subcommand
    for name, svc in services.items():
        if "build" in svc:
            command = svc["command"]
            assert isinstance(command, list), f"{name}: use the exec form"
            assert command[0] in SUBCOMMANDS, f"{name}: {command[0]} is not a subcommand"


def test_host_ports_are_bound_to_loopback(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is not on loopback"


def test_no_secret_is_written_in_the_compose_file(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        env = svc.get("environment") or {}
        assert isinstance(env, dict)
        for key in env:
            assert not any(word in key for word in SECRET_KEYS), f"{name}: {key} inline"
    assert "change-me" not in (ROOT / "docker-compose.yml").read_text()
    example = (ROOT / ".env.example").read_text()
    for line in example.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            if any(word in key for word in SECRET_KEYS):
                assert value.startswith("change-me"), f".env.example: {key} holds a value"


def test_data_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    volumes = set(compose["volumes"])
    for name in ("mosquitto", "influxdb"):
        mounts = compose["services"][name]["volumes"]
        named = {str(m).split(":", 1)[0] for m in mounts}
        assert named & volumes, f"{name} keeps its data in no named volume"


def test_mounted_config_files_exist(services: dict[str, dict[str, Any]]) -> None:
    for svc in services.values():
        for mount in svc.get("volumes", []):
            source = str(mount).split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).is_file(), source


def _secret_subpaths(svc: dict[str, Any]) -> list[str]:
    return [
        m["volume"]["subpath"]
        for m in svc.get("volumes", [])
        if isinstance(m, dict) and m.get("source") == "edgewatch-secrets"
    ]


def test_only_the_secrets_init_service_and_influxdb_read_the_admin_env_file(
    compose: dict[str, Any],
) -> None:
    with_env_file = {name for name, svc in compose["services"].items() if "env_file" in svc}
    assert with_env_file == {"influxdb", "secrets-init"}


def test_each_service_mounts_only_its_own_secrets_read_only(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("ingest", "simulator", "dashboard", "alerter", "mosquitto"):
        assert _secret_subpaths(services[name]) == [f"compose/{name}"], name
        mount = next(m for m in services[name]["volumes"] if isinstance(m, dict))
        assert mount["read_only"] is True, name
    assert services["secrets-init"]["command"][:2] == ["stack", "compose-init"]


def test_compose_broker_requires_accounts_and_offers_tls() -> None:
    conf = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    assert "allow_anonymous false" in conf
    assert "listener 8883 0.0.0.0" in conf
    assert "tls_version tlsv1.2" in conf
    # Devices by certificate on 8883 (CN as user name, revocation list), passwords on 8884.
    cert_listener = conf[conf.index("listener 8883 0.0.0.0") :]
    cert_listener = cert_listener[: cert_listener.index("listener 8884 0.0.0.0")]
    for line in ("require_certificate true", "use_identity_as_username true"):
        assert line in cert_listener
    assert "crlfile /mosquitto/secrets/crl.pem" in cert_listener
    # The only plain listener is the container's own loopback.
    tls = ("listener 8883 0.0.0.0", "listener 8884 0.0.0.0")
    plain = [line for line in conf if line.startswith("listener ") and line not in tls]
    assert plain == ["listener 1883 127.0.0.1"]
