"""Pure parts of the stack room: Flux rendering, names, dotenv output, ports, build parsing."""

from __future__ import annotations

import json
import shlex
import socket
from pathlib import Path

import pytest

from edgewatch.settings import Settings, load_settings
from stack.bootstrap import (
    BucketNames,
    StackCredentials,
    load_credentials,
    render_flux,
    validate_name,
    wanted_permissions,
    write_credentials_file,
)
from stack.demo import service_env
from stack.influxd import (
    BuildError,
    first_rustup_toolchain,
    last_meaningful_line,
    parse_go_mod_require,
)
from stack.local_stack import (
    StackPaths,
    default_bucket_names,
    dotenv_lines,
    influxdb_port,
    service_environment,
)
from stack.processes import (
    check_port_free,
    free_port,
    port_in_use,
    render_mosquitto_conf,
)

BUCKETS = BucketNames(raw="edgewatch", m1="edgewatch_1m", h1="edgewatch_1h", ops="edgewatch_ops")
CREDS = StackCredentials(
    url="http://127.0.0.1:8086",
    org="edgewatch",
    org_id="0123456789abcdef",
    admin_user="admin",
    admin_password="pw",
    admin_token="admin-token",
    ingest_token="ingest-token",
    dashboard_token="dash-token",
    rollup_token="rollup-token",
    alerter_token="alerter-token",
)


@pytest.mark.parametrize("name", ["edgewatch", "edgewatch_1m", "a.b-c", "X9"])
def test_valid_names_pass(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", 'x") |> drop(columns: ["_value"]) //', "with space", "ü", "a/b", "a\nb"]
)
def test_names_that_could_break_out_of_a_flux_string_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        validate_name(name)


def test_render_flux_substitutes_validated_names_only() -> None:
    assert render_flux('from(bucket: "${b}")', b="raw") == 'from(bucket: "raw")'
    with pytest.raises(ValueError, match="invalid"):
        render_flux('from(bucket: "${b}")', b='raw" or true')
    with pytest.raises(ValueError, match="needs a value for b"):
        render_flux('from(bucket: "${b}")')


def test_bucket_names_must_be_valid_and_distinct() -> None:
    with pytest.raises(ValueError, match="must differ"):
        BucketNames(raw="a", m1="a", h1="b", ops="c")
    with pytest.raises(ValueError, match="invalid"):
        BucketNames(raw="a b", m1="a", h1="b", ops="c")


def test_rollup_token_reads_raw_and_reads_and_writes_only_the_rollup_buckets() -> None:
    ids = {"edgewatch": "r", "edgewatch_1m": "m", "edgewatch_1h": "h", "edgewatch_ops": "o"}
    rollup = wanted_permissions("rollup", ids, BUCKETS, "org")
    assert sorted((p["action"], p["resource"]["id"]) for p in rollup) == [
        ("read", "h"),
        ("read", "m"),
        ("read", "r"),
        ("write", "h"),
        ("write", "m"),
    ]


def test_the_rollup_service_gets_only_its_own_token() -> None:
    rollup = dict(
        line.split("=", 1) for line in dotenv_lines(load_settings(), CREDS, service="rollup")
    )
    assert rollup["INFLUXDB_V2_TOKEN"] == CREDS.rollup_token
    assert CREDS.admin_token not in rollup.values()
    assert "MQTT_PASSWORD" not in rollup


def test_ingest_token_may_only_write_raw_and_state_and_dashboard_writes_only_ops() -> None:
    ids = {
        "edgewatch": "r",
        "edgewatch_1m": "m",
        "edgewatch_1h": "h",
        "edgewatch_ops": "o",
        "edgewatch_state": "s",
    }
    ingest = wanted_permissions("ingest", ids, BUCKETS, "org")
    assert [(p["action"], p["resource"]["id"]) for p in ingest] == [("write", "r"), ("write", "s")]
    dashboard = wanted_permissions("dashboard", ids, BUCKETS, "org")
    writes = [p["resource"]["id"] for p in dashboard if p["action"] == "write"]
    reads = {p["resource"]["id"] for p in dashboard if p["action"] == "read"}
    assert writes == ["o"]
    assert reads == {"r", "m", "h", "o", "s"}
    alerter = wanted_permissions("alerter", ids, BUCKETS, "org")
    assert sorted(p["resource"]["id"] for p in alerter if p["action"] == "write") == ["o", "s"]


def test_the_state_bucket_is_kept_forever_and_named_apart() -> None:
    assert BUCKETS.retentions()[BUCKETS.state] == 0
    with pytest.raises(ValueError, match="must differ"):
        BucketNames(raw="a", m1="b", h1="c", ops="d", state="a")


def test_credentials_file_is_private_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "state" / "credentials.json"
    write_credentials_file(path, {k: str(v) for k, v in vars(CREDS).items()})
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_credentials(path) == CREDS
    assert "admin-token" not in repr(CREDS)


def test_missing_credentials_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="edgewatch stack up"):
        load_credentials(tmp_path / "credentials.json")
    (tmp_path / "credentials.json").write_text(json.dumps({"url": "x"}))
    with pytest.raises(RuntimeError, match="edgewatch stack up"):
        load_credentials(tmp_path / "credentials.json")


def test_dotenv_lines_cover_every_setting_the_services_read() -> None:
    settings = load_settings(mqtt_port=11883, influxdb_url="http://127.0.0.1:18086")
    lines = dotenv_lines(
        settings, CREDS, mqtt_passwords={"ingest": "pw-i", "fleet": "pw-f"}, ca_path=Path("/ca")
    )
    values = dict(line.split("=", 1) for line in lines)
    assert set(values) == {
        "MQTT_HOST",
        "MQTT_PORT",
        "MQTT_TLS_PORT",
        "MQTT_TLS_PASSWORD_PORT",
        "MQTT_TLS_CA",
        "MQTT_TOPIC_ROOT",
        "MQTT_USERNAME",
        "MQTT_PASSWORD",
        "INFLUXDB_V2_URL",
        "INFLUXDB_V2_ORG",
        "INFLUXDB_V2_BUCKET",
        "INFLUXDB_V2_TOKEN",
        "EDGEWATCH_INGEST_TOKEN",
        "EDGEWATCH_DASHBOARD_TOKEN",
        "EDGEWATCH_ROLLUP_TOKEN",
        "EDGEWATCH_ALERTER_TOKEN",
        "EDGEWATCH_BUCKET_1M",
        "EDGEWATCH_BUCKET_1H",
        "EDGEWATCH_BUCKET_OPS",
        "EDGEWATCH_BUCKET_STATE",
    }
    assert values["MQTT_PORT"] == "11883"
    assert values["INFLUXDB_V2_TOKEN"] == "admin-token"
    assert values["EDGEWATCH_INGEST_TOKEN"] == "ingest-token"
    assert all(line.startswith("export ") for line in dotenv_lines(settings, CREDS, export=True))


def test_service_env_carries_only_that_services_secrets() -> None:
    settings = load_settings()
    passwords = {"ingest": "pw-i", "fleet": "pw-f"}

    def env(service: str) -> dict[str, str]:
        lines = dotenv_lines(settings, CREDS, service=service, mqtt_passwords=passwords)
        return dict(line.split("=", 1) for line in lines)

    ingest = env("ingest")
    assert ingest["INFLUXDB_V2_TOKEN"] == "ingest-token"
    assert (ingest["MQTT_USERNAME"], ingest["MQTT_PASSWORD"]) == ("ingest", "pw-i")
    assert "EDGEWATCH_DASHBOARD_TOKEN" not in ingest
    simulator = env("simulator")
    assert "INFLUXDB_V2_TOKEN" not in simulator
    assert simulator["MQTT_USERNAME"] == "fleet"
    dashboard = env("dashboard")
    assert dashboard["INFLUXDB_V2_TOKEN"] == CREDS.dashboard_token
    assert "MQTT_PASSWORD" not in dashboard
    alerter = env("alerter")
    assert alerter["INFLUXDB_V2_TOKEN"] == "alerter-token"
    assert "MQTT_PASSWORD" not in alerter and "EDGEWATCH_DASHBOARD_TOKEN" not in alerter
    with pytest.raises(ValueError, match="unknown service"):
        env("root")


def test_dotenv_values_survive_a_shell_eval() -> None:
    settings = load_settings(mqtt_topic_root="odd root$x")
    line = next(x for x in dotenv_lines(settings, CREDS) if x.startswith("MQTT_TOPIC_ROOT="))
    assert shlex.split(line.split("=", 1)[1]) == ["odd root$x"]


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("http://127.0.0.1:18086", 18086),
        ("http://localhost:9999/", 9999),
        ("http://127.0.0.1", 8086),
    ],
)
def test_influxdb_port_comes_from_the_url(url: str, port: int) -> None:
    assert influxdb_port(url) == port


@pytest.mark.parametrize("url", ["https://127.0.0.1:8086", "http://10.0.0.5:8086"])
def test_stack_serves_influxdb_on_loopback_http_only(url: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        influxdb_port(url)


def test_port_check_names_the_setting_to_change() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert port_in_use(port)
        with pytest.raises(RuntimeError) as exc:
            check_port_free(port, env_var="MQTT_PORT")
    assert str(exc.value) == (
        f"port {port} on 127.0.0.1 is in use: set MQTT_PORT=... or stop what holds it"
    )


def test_free_port_is_free() -> None:
    port = free_port()
    assert not port_in_use(port)
    check_port_free(port, env_var="MQTT_PORT")


def test_mosquitto_conf_listens_on_loopback_and_keeps_queued_messages() -> None:
    conf = render_mosquitto_conf(
        host="127.0.0.1", port=1884, data_dir=Path("/d"), log_path=Path("/d/m.log")
    ).splitlines()
    for line in (
        "listener 1884 127.0.0.1",
        "allow_anonymous true",
        "persistence true",
        "persistence_location /d/",
        "max_queued_messages 1000000",
        "log_dest file /d/m.log",
    ):
        assert line in conf
    assert not any(line.startswith("listener") and "0.0.0.0" in line for line in conf)


GO_MOD = """module github.com/influxdata/influxdb/v2

go 1.23

require (
\tgithub.com/influxdata/flux v0.196.1
\tgithub.com/influxdata/pkg-config v0.2.14
)

require github.com/other/thing v1.0.0
"""


def test_go_mod_versions_are_read_from_blocks_and_single_lines() -> None:
    assert parse_go_mod_require(GO_MOD, "github.com/influxdata/pkg-config") == "v0.2.14"
    assert parse_go_mod_require(GO_MOD, "github.com/other/thing") == "v1.0.0"
    with pytest.raises(BuildError):
        parse_go_mod_require(GO_MOD, "github.com/influxdata/pkg")


def test_first_rustup_toolchain_is_the_first_listed() -> None:
    out = "stable-x86_64-unknown-linux-gnu (active, default)\nnightly-x86_64-unknown-linux-gnu\n"
    assert first_rustup_toolchain(out) == "stable-x86_64-unknown-linux-gnu"
    with pytest.raises(BuildError, match="rustup toolchain install"):
        first_rustup_toolchain("no installed toolchains\n")


def test_last_meaningful_line_skips_blanks_and_shortens() -> None:
    assert last_meaningful_line("a\ngithub.com/x/y\n\n  \n") == "github.com/x/y"
    assert last_meaningful_line("") == "(no output yet)"
    assert len(last_meaningful_line("x" * 500)) == 120


def test_a_secure_listener_replaces_the_anonymous_one() -> None:
    secure = "per_listener_settings false\nallow_anonymous false\nlistener 8883 127.0.0.1\n"
    conf = render_mosquitto_conf(
        host="127.0.0.1",
        port=8883,
        data_dir=Path("/d"),
        log_path=Path("/d/m.log"),
        listener_conf=secure,
    ).splitlines()
    assert "allow_anonymous true" not in conf
    assert conf[-3:] == secure.strip().splitlines()
    assert "persistence true" in conf


def test_every_key_is_a_setting_the_service_reads_back() -> None:
    settings = load_settings(mqtt_topic_root="it's odd")
    values = service_environment(settings, CREDS, mqtt_passwords={"ingest": "pw-i"})
    assert load_settings(**values).mqtt_topic_root == "it's odd"  # by alias, unquoted
    assert values["INFLUXDB_V2_TOKEN"] == "admin-token"


def test_a_child_gets_its_own_settings_unquoted_and_none_of_ours(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path, mqtt_topic_root="it's odd")
    paths = StackPaths(tmp_path)
    write_credentials_file(paths.credentials, {**CREDS.__dict__})
    paths.accounts_dir.mkdir(parents=True)
    paths.service_passwords.write_text(json.dumps({"fleet": "pw'f"}))
    outer = {"PATH": "/bin", "INFLUXDB_V2_TOKEN": "outer-admin", "MQTT_PASSWORD": "outer"}
    env = service_env(settings, paths, "simulator", outer)
    assert env["PATH"] == "/bin"
    assert env["MQTT_TOPIC_ROOT"] == "it's odd"
    assert env["MQTT_PASSWORD"] == "pw'f"
    assert "INFLUXDB_V2_TOKEN" not in env  # the simulator gets no token, not even ours
    assert env["EDGEWATCH_STATE_DIR"] == str(tmp_path)


def test_default_buckets_are_the_settings_defaults() -> None:
    fields = Settings.model_fields
    buckets = default_bucket_names()
    assert (buckets.raw, buckets.m1, buckets.h1, buckets.ops) == (
        fields["influxdb_bucket"].default,
        fields["influxdb_bucket_1m"].default,
        fields["influxdb_bucket_1h"].default,
        fields["influxdb_bucket_ops"].default,
    )
