"""The local stack's domain (stack/local_stack.py, stack/demo.py): environments, names."""

from __future__ import annotations

import json
from pathlib import Path

from edgewatch.settings import Settings, load_settings
from stack.bootstrap import StackCredentials, write_credentials_file
from stack.demo import service_env
from stack.local_stack import StackPaths, default_bucket_names, service_environment

CREDS = StackCredentials(
    url="http://127.0.0.1:8086",
    org="edgewatch",
    org_id="0123456789abcdef",
    admin_user="admin",
    admin_password="pw",
    admin_token="admin-token",
    ingest_token="ingest-token",
    dashboard_token="dash-token",
)


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
