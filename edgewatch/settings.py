"""The one settings path: every knob of every service, read from the environment.

Names follow the client libraries' own (`INFLUXDB_V2_URL`, ...) so that a `.env` written by
`edgewatch stack env` works for the influx CLI and for influxdb-client as well as for us.
Secrets come from the environment only; nothing here has a secret default.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TOPIC_ROOT = "edgewatch"
# How long an edge agent holds a reading for the ones after it, to send them as one batch
# message. 1 s is well under the health model's thresholds: a device turns STALE after
# 3 x interval_s of silence (30 s at the agent's default interval of 10 s, 15 s at the
# simulator's 5 s, 3 min at the contract's default of 60 s), so the 1 s it adds is not seen
# there, nor on a dashboard that refreshes every 10 s. A device whose readings come faster
# than its announced interval (events, bursts) sends one message a second instead of one per
# reading. The agent never lingers longer than the device's
# interval (`EdgeAgent.linger_seconds`): the silence between two messages then stays under
# 2 x interval_s, below the STALE threshold, whatever the interval.
DEFAULT_EDGE_LINGER_SECONDS = 1.0
INFLUXDB_VERSION = "2.9.1"
DEFAULT_JOURNAL_MAX_BYTES = 10 * 2**30  # 10 GiB: about 4 h of 1,000 msg/s (bench/outage.py)


def default_state_dir() -> Path:
    """Where the local stack keeps its data, logs and pids: outside any git checkout."""
    return Path.home() / ".local" / "state" / "edgewatch"


def default_cache_dir() -> Path:
    """Where built binaries (influxd, telegraf) are cached between runs."""
    return Path.home() / ".cache" / "edgewatch"


class Settings(BaseSettings):
    """All configuration. Each field's alias is its environment variable."""

    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", populate_by_name=True, frozen=True
    )

    # MQTT
    mqtt_host: str = Field("127.0.0.1", alias="MQTT_HOST")
    mqtt_port: int = Field(1883, alias="MQTT_PORT")
    mqtt_username: str | None = Field(None, alias="MQTT_USERNAME")
    mqtt_password: SecretStr | None = Field(None, alias="MQTT_PASSWORD")
    mqtt_tls_ca: Path | None = Field(None, alias="MQTT_TLS_CA")
    # The TLS listener that requires a device certificate (its CN is the user name).
    mqtt_tls_port: int = Field(8883, alias="MQTT_TLS_PORT")
    # TLS with a user name and password: services, and devices that cannot hold a certificate.
    mqtt_tls_password_port: int = Field(8884, alias="MQTT_TLS_PASSWORD_PORT")
    # This client's certificate and key (from `edgewatch stack certs issue`): connect with them.
    mqtt_tls_cert: Path | None = Field(None, alias="MQTT_TLS_CERT")
    mqtt_tls_key: Path | None = Field(None, alias="MQTT_TLS_KEY")
    mqtt_topic_root: str = Field(DEFAULT_TOPIC_ROOT, alias="MQTT_TOPIC_ROOT")
    mqtt_client_id: str = Field("edgewatch-ingest", alias="MQTT_CLIENT_ID")
    mqtt_share_group: str | None = Field(None, alias="MQTT_SHARE_GROUP")
    mqtt_session_expiry_seconds: int = Field(86400, alias="MQTT_SESSION_EXPIRY_SECONDS")
    mqtt_keepalive_seconds: int = Field(30, alias="MQTT_KEEPALIVE_SECONDS")

    # InfluxDB
    influxdb_url: str = Field("http://127.0.0.1:8086", alias="INFLUXDB_V2_URL")
    influxdb_org: str = Field("edgewatch", alias="INFLUXDB_V2_ORG")
    influxdb_token: SecretStr | None = Field(None, alias="INFLUXDB_V2_TOKEN")
    influxdb_bucket: str = Field("edgewatch", alias="INFLUXDB_V2_BUCKET")
    influxdb_bucket_1m: str = Field("edgewatch_1m", alias="EDGEWATCH_BUCKET_1M")
    influxdb_bucket_1h: str = Field("edgewatch_1h", alias="EDGEWATCH_BUCKET_1H")
    influxdb_bucket_ops: str = Field("edgewatch_ops", alias="EDGEWATCH_BUCKET_OPS")
    # Infinite retention: device inventory and last-seen, alert events (docs/architecture.md).
    influxdb_bucket_state: str = Field("edgewatch_state", alias="EDGEWATCH_BUCKET_STATE")
    influxdb_timeout_seconds: float = Field(10.0, alias="INFLUXDB_V2_TIMEOUT_SECONDS")
    # Least-privilege tokens made by `edgewatch stack up` (see stack/bootstrap.py): the ingest
    # writes only the raw and state buckets, the dashboard reads all buckets and writes only ops.
    ingest_token: SecretStr | None = Field(None, alias="EDGEWATCH_INGEST_TOKEN")
    dashboard_token: SecretStr | None = Field(None, alias="EDGEWATCH_DASHBOARD_TOKEN")

    # Ingest
    ingest_batch_max_lines: int = Field(5000, alias="EDGEWATCH_BATCH_MAX_LINES")
    ingest_flush_interval_seconds: float = Field(0.5, alias="EDGEWATCH_FLUSH_INTERVAL_SECONDS")
    ingest_queue_max_messages: int = Field(20000, alias="EDGEWATCH_QUEUE_MAX_MESSAGES")
    ingest_stats_interval_seconds: float = Field(5.0, alias="EDGEWATCH_STATS_INTERVAL_SECONDS")
    ingest_instance: str = Field("ingest-1", alias="EDGEWATCH_INGEST_INSTANCE")
    # The durable journal (ingest/journal.py): each instance keeps <dir>/<instance>.
    ingest_journal_dir: Path | None = Field(None, alias="EDGEWATCH_INGEST_JOURNAL_DIR")
    ingest_journal_max_bytes: int = Field(
        DEFAULT_JOURNAL_MAX_BYTES, alias="EDGEWATCH_INGEST_JOURNAL_MAX_BYTES", gt=0
    )
    ingest_journal_warn_share: float = Field(
        0.8, alias="EDGEWATCH_INGEST_JOURNAL_WARN_SHARE", gt=0.0, le=1.0
    )

    # Rollup service (`edgewatch rollup`): fills the 1-minute and 1-hour buckets.
    # Its token reads the raw bucket and reads/writes the rollup buckets (stack bootstrap).
    rollup_token: SecretStr | None = Field(None, alias="EDGEWATCH_ROLLUP_TOKEN")
    rollup_interval_seconds: float = Field(60.0, gt=0, alias="EDGEWATCH_ROLLUP_INTERVAL_SECONDS")
    # A closed minute is aggregated once it closed the ingest's late threshold (60 s) plus
    # this grace ago: the grace covers the ingest's write of readings that came in time.
    rollup_grace_seconds: float = Field(30.0, ge=0, alias="EDGEWATCH_ROLLUP_GRACE_SECONDS")
    rollup_devices_per_query: int = Field(500, ge=1, alias="EDGEWATCH_ROLLUP_DEVICES_PER_QUERY")
    rollup_timeout_seconds: float = Field(300.0, gt=0, alias="EDGEWATCH_ROLLUP_TIMEOUT_SECONDS")
    # With no stored progress (a new install), the frontier starts this far back.
    rollup_first_catch_up_seconds: float = Field(
        3 * 3600.0, ge=0, alias="EDGEWATCH_ROLLUP_FIRST_CATCH_UP_SECONDS"
    )

    # Dashboard
    dashboard_port: int = Field(8501, alias="EDGEWATCH_DASHBOARD_PORT")
    dashboard_refresh_seconds: float = Field(10.0, alias="EDGEWATCH_REFRESH_SECONDS")
    dashboard_user: str = Field("operator", alias="EDGEWATCH_USER")
    # Closed alerts older than this are not listed; open ones always are.
    alert_lookback_days: int = Field(30, alias="EDGEWATCH_ALERT_LOOKBACK_DAYS")
    auth_mode: Literal["local", "none"] = Field("local", alias="EDGEWATCH_AUTH")
    users_file: Path | None = Field(None, alias="EDGEWATCH_USERS_FILE")
    session_max_age_seconds: float = Field(8 * 3600, alias="EDGEWATCH_SESSION_MAX_AGE_SECONDS")
    # Signs the sign-in cookie; absent: a random one kept beside the account store.
    session_secret: SecretStr | None = Field(None, alias="EDGEWATCH_SESSION_SECRET")
    # Mark the cookie Secure (sent over HTTPS only): set when the dashboard is behind TLS.
    session_cookie_secure: bool = Field(False, alias="EDGEWATCH_SESSION_COOKIE_SECURE")

    # Alerter (server-side rules and notifications)
    alerter_token: SecretStr | None = Field(None, alias="EDGEWATCH_ALERTER_TOKEN")
    rules_file: Path | None = Field(None, alias="EDGEWATCH_RULES_FILE")
    rules_interval_seconds: float = Field(10.0, gt=0, alias="EDGEWATCH_RULES_INTERVAL_SECONDS")
    # Apprise URLs carry credentials: from the environment or a secrets file, never git.
    notify_urls: SecretStr | None = Field(None, alias="EDGEWATCH_NOTIFY_URLS")
    notify_urls_file: Path | None = Field(None, alias="EDGEWATCH_NOTIFY_URLS_FILE")
    notify_retry_base_seconds: float = Field(5.0, gt=0, alias="EDGEWATCH_NOTIFY_RETRY_BASE_SECONDS")
    notify_retry_max_seconds: float = Field(300.0, gt=0, alias="EDGEWATCH_NOTIFY_RETRY_MAX_SECONDS")
    notify_give_up_seconds: float = Field(86400.0, gt=0, alias="EDGEWATCH_NOTIFY_GIVE_UP_SECONDS")
    notify_timeout_seconds: float = Field(10.0, gt=0, alias="EDGEWATCH_NOTIFY_TIMEOUT_SECONDS")

    # Edge agent (`edgewatch agent`, `edgewatch simulate`): batching and compression.
    edge_linger_seconds: float = Field(
        DEFAULT_EDGE_LINGER_SECONDS, ge=0, alias="EDGEWATCH_EDGE_LINGER_SECONDS"
    )
    edge_gzip: bool = Field(False, alias="EDGEWATCH_EDGE_GZIP")

    # Local stack
    state_dir: Path = Field(default_factory=default_state_dir, alias="EDGEWATCH_STATE_DIR")
    cache_dir: Path = Field(default_factory=default_cache_dir, alias="EDGEWATCH_CACHE_DIR")
    influxdb_version: str = Field(INFLUXDB_VERSION, alias="EDGEWATCH_INFLUXDB_VERSION")

    @property
    def users_path(self) -> Path:
        """The dashboard's local account store (used when no identity provider is set)."""
        return self.users_file or self.state_dir / "users.json"

    @property
    def session_secret_path(self) -> Path:
        """Where the cookie-signing key is kept when EDGEWATCH_SESSION_SECRET is not set."""
        return self.users_path.with_name("session-secret")

    @property
    def ingest_journal_path(self) -> Path:
        """This ingest instance's own journal directory (replicas never share one)."""
        instance = self.ingest_instance
        if not instance or instance in (".", "..") or "/" in instance or "\0" in instance:
            raise ValueError(
                f"EDGEWATCH_INGEST_INSTANCE={instance!r} cannot name a journal directory: "
                "use letters, digits, '-', '_' or '.'"
            )
        base = self.ingest_journal_dir or self.state_dir / "ingest-journal"
        return base / instance

    @property
    def mqtt_connect_port(self) -> int:
        """The port clients connect to: with a CA configured, the certificate listener when
        this client has a certificate, else the password TLS listener; else the plain one."""
        if self.mqtt_tls_ca is None:
            return self.mqtt_port
        return self.mqtt_tls_port if self.mqtt_tls_cert is not None else self.mqtt_tls_password_port

    def token_value(self) -> str:
        """The InfluxDB token, or a clear error naming the fix."""
        if self.influxdb_token is None:
            raise RuntimeError(
                'INFLUXDB_V2_TOKEN is not set: run `eval "$(edgewatch stack env --export)"` '
                "or set it to a token of your InfluxDB"
            )
        return self.influxdb_token.get_secret_value()


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (tests, CLI flags) on top."""
    return Settings(**overrides)  # type: ignore[arg-type]


def env_name(field: str) -> str:
    """The environment variable of a setting: its alias, the one place a name is spelled."""
    alias = Settings.model_fields[field].alias
    if alias is None:  # pragma: no cover - every field has one (see the class docstring)
        raise KeyError(field)
    return alias


def settings_env(**values: object) -> dict[str, str]:
    """Environment variables for the given settings (by field name), as a child reads them."""
    return {env_name(field): str(value) for field, value in values.items()}


def without_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` less every variable that is a setting: a child gets only what it is given."""
    names = {env_name(field) for field in Settings.model_fields}
    return {key: value for key, value in environ.items() if key not in names}
