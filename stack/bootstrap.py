# influxdb-client's generated models and services carry no annotations; calls into them are
# checked by the integration tests instead.
# mypy: disallow-untyped-calls=False
"""stack room: idempotent InfluxDB setup through influxdb-client's management APIs.

Creates the org, the five buckets of docs/architecture.md and least-privilege tokens, removes
the rollup tasks of earlier versions (the rollup service, `edgewatch rollup`, replaced them),
and keeps the credentials in a 0600 JSON file. A re-run finds everything by name and changes
nothing. Touches: one InfluxDB over HTTP, the
credentials file.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.domain.authorization import Authorization
from influxdb_client.domain.bucket import Bucket
from influxdb_client.domain.bucket_retention_rules import BucketRetentionRules
from influxdb_client.domain.onboarding_request import OnboardingRequest
from influxdb_client.domain.permission import Permission
from influxdb_client.domain.permission_resource import PermissionResource
from influxdb_client.domain.post_bucket_request import PostBucketRequest
from influxdb_client.rest import ApiException
from influxdb_client.service.setup_service import SetupService

from shared.private_file import write_private_file

logger = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
ADMIN_USER = "admin"
DAY_SECONDS = 86400
RAW_RETENTION_SECONDS = 30 * DAY_SECONDS
RETENTION_1M_SECONDS = 400 * DAY_SECONDS
INFINITE = 0
# Rollup tasks of earlier versions: removed by bootstrap (their look-back missed late data and
# their filter could not be pushed down to storage; docs/architecture.md, "Rollups").
OLD_ROLLUP_TASKS = ("edgewatch-rollup-1m", "edgewatch-rollup-1h")
INGEST_TOKEN_DESCRIPTION = "edgewatch-ingest"  # noqa: S105 - a label, not a secret
DASHBOARD_TOKEN_DESCRIPTION = "edgewatch-dashboard"  # noqa: S105 - a label, not a secret
ROLLUP_TOKEN_DESCRIPTION = "edgewatch-rollup"  # noqa: S105 - a label, not a secret
ALERTER_TOKEN_DESCRIPTION = "edgewatch-alerter"  # noqa: S105 - a label, not a secret
# One token per role, made in this order; the key names the credentials file entry.
TOKEN_DESCRIPTIONS = {
    "ingest": INGEST_TOKEN_DESCRIPTION,
    "dashboard": DASHBOARD_TOKEN_DESCRIPTION,
    "rollup": ROLLUP_TOKEN_DESCRIPTION,
    "alerter": ALERTER_TOKEN_DESCRIPTION,
}
HTTP_TIMEOUT_MS = 30_000

JSON = dict[str, Any]


def validate_name(name: str, what: str = "name") -> str:
    """Allow-list a bucket/org/task name before it goes into Flux text."""
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"invalid {what} {name!r}: use only letters, digits, '_', '.', '-'")
    return name


def render_flux(template: str, **names: str) -> str:
    """Fill a `.flux` template's ${placeholders} with validated names (missing ones fail)."""
    safe = {key: validate_name(value, key) for key, value in names.items()}
    try:
        return string.Template(template).substitute(safe)
    except KeyError as exc:
        raise ValueError(f"flux template needs a value for {exc.args[0]}") from None


@dataclass(frozen=True)
class BucketNames:
    raw: str
    m1: str
    h1: str
    ops: str
    state: str = "edgewatch_state"

    def __post_init__(self) -> None:
        names = (self.raw, self.m1, self.h1, self.ops, self.state)
        for value in names:
            validate_name(value, "bucket name")
        if len(set(names)) != len(names):
            raise ValueError(f"bucket names must differ: {self}")

    def retentions(self) -> dict[str, int]:
        """Retention in seconds by bucket name; 0 keeps data forever."""
        return {
            self.raw: RAW_RETENTION_SECONDS,
            self.m1: RETENTION_1M_SECONDS,
            self.h1: INFINITE,
            self.ops: INFINITE,
            # What must outlive raw retention: inventory, last-seen, alert events.
            self.state: INFINITE,
        }


@dataclass(frozen=True)
class StackCredentials:
    """What bootstrap made; secrets stay out of repr so a log line cannot leak them."""

    url: str
    org: str
    org_id: str
    admin_user: str
    admin_password: str = field(repr=False)
    admin_token: str = field(repr=False)
    ingest_token: str = field(repr=False)
    dashboard_token: str = field(repr=False)
    rollup_token: str = field(repr=False)
    # Reads every bucket, writes rule alerts (state) and its records (ops); "" in older files.
    alerter_token: str = field(default="", repr=False)


def read_credentials_file(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot read credentials file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise RuntimeError(f"credentials file {path} does not hold a JSON object")
    return {str(k): str(v) for k, v in data.items()}


def write_credentials_file(path: Path, data: dict[str, str]) -> None:
    """Write atomically and durably, 0600 from the first byte (shared/private_file.py)."""
    write_private_file(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def load_credentials(path: Path) -> StackCredentials:
    """The credentials a previous bootstrap stored, or a clear error naming the fix."""
    data = read_credentials_file(path)
    try:
        return StackCredentials(
            **{k: data[k] for k in StackCredentials.__dataclass_fields__ if k in data}
        )
    except TypeError:
        raise RuntimeError(
            f"no complete credentials in {path}: run `edgewatch stack up` first"
        ) from None


class InfluxError(RuntimeError):
    """InfluxDB answered a bootstrap call with an error status."""

    def __init__(self, url: str, status: int, body: str) -> None:
        super().__init__(f"InfluxDB at {url} answered {status}: {body[:500]}")
        self.status = status


@contextmanager
def influx_errors(url: str) -> Iterator[None]:
    """Library exceptions as one-line errors naming the URL (and the fix when it is ours)."""
    try:
        yield
    except ApiException as exc:
        raise InfluxError(url, int(exc.status or 0), str(exc.body or exc.reason)) from None
    except urllib3.exceptions.HTTPError as exc:
        raise RuntimeError(
            f"InfluxDB at {url} is unreachable ({exc}): start it (`edgewatch stack up`) or "
            "set INFLUXDB_V2_URL to where it runs"
        ) from None


def _listing(find: Callable[..., list[Any] | None], **params: str) -> list[Any]:
    """A filtered listing; InfluxDB answers 404 instead of an empty list for some."""
    try:
        return list(find(**params) or [])
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise


def _retention_seconds(bucket: Bucket) -> int:
    for rule in bucket.retention_rules or []:
        if rule.type == "expire":
            return int(rule.every_seconds or 0)
    return INFINITE


def _retention_rules(seconds: int) -> list[BucketRetentionRules]:
    return [BucketRetentionRules(type="expire", every_seconds=seconds)] if seconds else []


def _permission(action: str, bucket_id: str, org_id: str) -> JSON:
    return {"action": action, "resource": {"type": "buckets", "id": bucket_id, "orgID": org_id}}


def _as_library_permission(perm: JSON) -> Permission:
    res = perm["resource"]
    return Permission(
        action=perm["action"],
        resource=PermissionResource(type=res["type"], id=res["id"], org_id=res["orgID"]),
    )


def _permission_key(perm: Permission) -> tuple[str, str, str]:
    res = perm.resource
    return (str(perm.action), str(res.type), str(res.id))


def wanted_permissions(
    kind: str, bucket_ids: dict[str, str], buckets: BucketNames, org_id: str
) -> list[JSON]:
    """Least privilege: ingest writes raw and state only; the dashboard reads all, writes ops
    only; the rollup service reads raw and reads and writes the two rollup buckets; the
    alerter reads all, writes its rule alerts to state and its own records to ops."""
    if kind == "ingest":
        return [
            _permission("write", bucket_ids[buckets.raw], org_id),
            _permission("write", bucket_ids[buckets.state], org_id),
        ]
    if kind == "rollup":
        return [
            _permission("read", bucket_ids[buckets.raw], org_id),
            *(
                _permission(action, bucket_ids[name], org_id)
                for name in (buckets.m1, buckets.h1)
                for action in ("read", "write")
            ),
        ]
    reads = [
        _permission("read", bucket_ids[name], org_id)
        for name in (buckets.raw, buckets.m1, buckets.h1, buckets.ops, buckets.state)
    ]
    if kind == "alerter":
        return [
            *reads,
            *(_permission("write", bucket_ids[b], org_id) for b in (buckets.state, buckets.ops)),
        ]
    return [*reads, _permission("write", bucket_ids[buckets.ops], org_id)]


def _client(url: str, token: str | None = None) -> InfluxDBClient:
    return InfluxDBClient(url=url, token=token, timeout=HTTP_TIMEOUT_MS)  # type: ignore[arg-type]


def _ensure_setup(
    client: InfluxDBClient, org: str, raw_bucket: str, stored: dict[str, str]
) -> bool:
    """Run the first-time setup if the instance has none yet; True when it did."""
    setup = SetupService(client.api_client)
    if not setup.get_setup().allowed:
        return False
    # A fresh instance: tokens in an old credentials file belong to data that is gone.
    for key in ("ingest_token", "dashboard_token", "rollup_token", "admin_token", "org_id"):
        stored.pop(key, None)
    stored["admin_user"] = ADMIN_USER
    stored["admin_password"] = secrets.token_urlsafe(24)
    stored["admin_token"] = secrets.token_urlsafe(48)
    setup.post_setup(
        OnboardingRequest(
            username=ADMIN_USER,
            password=stored["admin_password"],
            org=org,
            bucket=raw_bucket,
            retention_period_seconds=RAW_RETENTION_SECONDS,
            token=stored["admin_token"],
        )
    )
    logger.info("influxdb set up: org %s, user %s", org, ADMIN_USER)
    return True


def _ensure_org(client: InfluxDBClient, org: str) -> str:
    api = client.organizations_api()
    found = _listing(api.find_organizations, org=org)
    if found:
        return str(found[0].id)
    created = api.create_organization(name=org)
    logger.info("org %s created", org)
    return str(created.id)


def _ensure_buckets(client: InfluxDBClient, org_id: str, buckets: BucketNames) -> dict[str, str]:
    api = client.buckets_api()

    def find_buckets(**params: str) -> list[Bucket] | None:
        return api.find_buckets(**params).buckets  # type: ignore[no-any-return]

    ids: dict[str, str] = {}
    for name, retention in buckets.retentions().items():
        found = _listing(find_buckets, org_id=org_id, name=name)
        if found:
            bucket = found[0]
            if _retention_seconds(bucket) != retention:
                bucket.retention_rules = _retention_rules(retention)
                api.update_bucket(bucket)
                logger.info("bucket %s: retention set to %d s", name, retention)
        else:
            bucket = api.create_bucket(
                bucket=PostBucketRequest(
                    org_id=org_id, name=name, retention_rules=_retention_rules(retention)
                )
            )
            logger.info("bucket %s created (retention %d s)", name, retention)
        ids[name] = str(bucket.id)
    return ids


def _remove_old_tasks(client: InfluxDBClient, org_id: str) -> None:
    """Delete the rollup tasks of earlier versions: the rollup service does their work."""
    api = client.tasks_api()
    for name in OLD_ROLLUP_TASKS:
        tasks = _listing(api.find_tasks, org_id=org_id, name=name)
        # The name filter is a prefix match on some versions: compare exactly.
        for task in (t for t in tasks if t.name == name):
            api.delete_task(task.id)
            logger.info("task %s removed (replaced by the rollup service)", name)


def _ensure_token(
    client: InfluxDBClient,
    org_id: str,
    description: str,
    permissions: list[JSON],
    known: str | None,
) -> str:
    """A token with exactly `permissions`, reusing ours when it still fits."""
    api = client.authorizations_api()
    wanted_perms = [_as_library_permission(p) for p in permissions]
    wanted = sorted(_permission_key(p) for p in wanted_perms)
    keep: str | None = None
    auth: Authorization
    for auth in _listing(api.find_authorizations, org_id=org_id):
        if auth.description != description:
            continue
        same = sorted(_permission_key(p) for p in auth.permissions or []) == wanted
        # InfluxDB 2.9 shows a token only when it is made; later listings give "". Trust the
        # credentials file then, and compare when the token is shown.
        shown = auth.token or None
        token = shown or known
        fits = same and auth.status == "active" and token is not None and keep is None
        if fits and (shown is None or known is None or shown == known):
            keep = token
            continue
        api.delete_authorization(auth)
        logger.info("token %s replaced (permissions or status changed)", description)
    if keep is not None:
        return keep
    created = api.create_authorization(
        authorization=Authorization(
            org_id=org_id, description=description, permissions=wanted_perms
        )
    )
    logger.info("token %s created", description)
    return str(created.token)


def bootstrap(
    *,
    url: str,
    org: str,
    buckets: BucketNames,
    credentials_path: Path,
    admin_token: str | None = None,
) -> StackCredentials:
    """Make the InfluxDB at `url` ready for edgewatch; safe to run any number of times.

    `admin_token` is for an instance set up by someone else (the credentials file is used
    otherwise).
    """
    validate_name(org, "org")
    stored = read_credentials_file(credentials_path)
    if stored.get("url") not in (None, url):
        # The same state dir may be pointed at another port: the data is the same.
        logger.info("credentials from %s now for %s", stored.get("url"), url)
    with influx_errors(url), _client(url) as anonymous:
        if _ensure_setup(anonymous, org, buckets.raw, stored):
            stored.update(url=url, org=org)
            write_credentials_file(credentials_path, stored)  # before anything else can fail
    token = admin_token or stored.get("admin_token")
    if not token:
        raise RuntimeError(
            f"InfluxDB at {url} is already set up, but {credentials_path} holds no admin "
            "token: set INFLUXDB_V2_TOKEN to an all-access token of it, or start from an "
            "empty data dir"
        )
    with influx_errors(url), _client(url, token) as client:
        org_id = _ensure_org(client, org)
        bucket_ids = _ensure_buckets(client, org_id, buckets)
        _remove_old_tasks(client, org_id)
        tokens = {
            kind: _ensure_token(
                client,
                org_id,
                description,
                wanted_permissions(kind, bucket_ids, buckets, org_id),
                stored.get(f"{kind}_token"),
            )
            for kind, description in TOKEN_DESCRIPTIONS.items()
        }
    creds = StackCredentials(
        url=url,
        org=org,
        org_id=org_id,
        admin_user=stored.get("admin_user", ADMIN_USER),
        admin_password=stored.get("admin_password", ""),
        admin_token=token,
        ingest_token=tokens["ingest"],
        dashboard_token=tokens["dashboard"],
        rollup_token=tokens["rollup"],
        alerter_token=tokens["alerter"],
    )
    new = {k: str(v) for k, v in asdict(creds).items()}
    if new != stored:
        write_credentials_file(credentials_path, new)
    return creds
