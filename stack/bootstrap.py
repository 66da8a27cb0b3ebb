"""stack room: idempotent InfluxDB setup through its HTTP API.

Creates the org, the five buckets of docs/architecture.md and least-privilege tokens, removes
the rollup tasks of earlier versions (the rollup service, `edgewatch rollup`, replaced them),
and keeps the credentials in a 0600 JSON file. A re-run finds everything by name and changes
nothing. Touches: one InfluxDB over HTTP, the
credentials file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import string
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

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
HTTP_TIMEOUT_SECONDS = 30.0

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
    """Write atomically, 0600 from the first byte (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    tmp.chmod(0o600)  # an existing tmp file kept its old mode through O_TRUNC
    tmp.replace(path)


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
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"InfluxDB {method} {path} answered {status}: {body[:500]}")
        self.status = status


class InfluxApi:
    """The few InfluxDB v2 HTTP calls bootstrap needs, on the standard library."""

    def __init__(
        self, url: str, token: str | None = None, timeout_seconds: float = HTTP_TIMEOUT_SECONDS
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_seconds = timeout_seconds

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: object | None = None,
    ) -> JSON:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310 - the URL is the configured InfluxDB
            f"{self.url}{path}{query}", data=data, method=method
        )
        req.add_header("Content-Type", "application/json")
        req.add_header("Accept", "application/json")
        if self.token is not None:
            req.add_header("Authorization", f"Token {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_seconds) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise InfluxError(method, path, exc.code, exc.read().decode(errors="replace")) from None
        except urllib.error.URLError as exc:
            raise RuntimeError(f"InfluxDB at {self.url} is unreachable: {exc.reason}") from None
        if not raw:
            return {}
        return cast(JSON, json.loads(raw))

    def get(self, path: str, **params: str) -> JSON:
        return self.request("GET", path, params=params or None)

    def find(self, path: str, key: str, **params: str) -> list[JSON]:
        """A filtered listing; InfluxDB answers 404 instead of an empty list for some."""
        try:
            found = self.get(path, **params).get(key) or []
        except InfluxError as exc:
            if exc.status == 404:
                return []
            raise
        return cast(list[JSON], found)

    def post(self, path: str, body: object) -> JSON:
        return self.request("POST", path, body=body)

    def patch(self, path: str, body: object) -> JSON:
        return self.request("PATCH", path, body=body)

    def delete(self, path: str) -> None:
        self.request("DELETE", path)


def _retention_seconds(bucket: JSON) -> int:
    for rule in bucket.get("retentionRules") or []:
        if rule.get("type") == "expire":
            return int(rule.get("everySeconds", 0))
    return INFINITE


def _retention_rules(seconds: int) -> list[JSON]:
    return [{"type": "expire", "everySeconds": seconds}] if seconds else []


def _permission(action: str, bucket_id: str, org_id: str) -> JSON:
    return {"action": action, "resource": {"type": "buckets", "id": bucket_id, "orgID": org_id}}


def _permission_key(perm: JSON) -> tuple[str, str, str]:
    res = perm.get("resource", {})
    return (str(perm.get("action")), str(res.get("type")), str(res.get("id")))


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


def _ensure_setup(api: InfluxApi, org: str, raw_bucket: str, stored: dict[str, str]) -> bool:
    """Run the first-time setup if the instance has none yet; True when it did."""
    if not api.get("/api/v2/setup").get("allowed", False):
        return False
    # A fresh instance: tokens in an old credentials file belong to data that is gone.
    for key in ("ingest_token", "dashboard_token", "rollup_token", "admin_token", "org_id"):
        stored.pop(key, None)
    stored["admin_user"] = ADMIN_USER
    stored["admin_password"] = secrets.token_urlsafe(24)
    stored["admin_token"] = secrets.token_urlsafe(48)
    api.post(
        "/api/v2/setup",
        {
            "username": ADMIN_USER,
            "password": stored["admin_password"],
            "org": org,
            "bucket": raw_bucket,
            "retentionPeriodSeconds": RAW_RETENTION_SECONDS,
            "token": stored["admin_token"],
        },
    )
    logger.info("influxdb set up: org %s, user %s", org, ADMIN_USER)
    return True


def _ensure_buckets(api: InfluxApi, org_id: str, buckets: BucketNames) -> dict[str, str]:
    ids: dict[str, str] = {}
    for name, retention in buckets.retentions().items():
        found = api.find("/api/v2/buckets", "buckets", orgID=org_id, name=name)
        if found:
            bucket = found[0]
            if _retention_seconds(bucket) != retention:
                api.patch(
                    f"/api/v2/buckets/{bucket['id']}",
                    {"retentionRules": _retention_rules(retention)},
                )
                logger.info("bucket %s: retention set to %d s", name, retention)
        else:
            bucket = api.post(
                "/api/v2/buckets",
                {"orgID": org_id, "name": name, "retentionRules": _retention_rules(retention)},
            )
            logger.info("bucket %s created (retention %d s)", name, retention)
        ids[name] = str(bucket["id"])
    return ids


def find_task(api: InfluxApi, org_id: str, name: str) -> JSON | None:
    tasks = api.find("/api/v2/tasks", "tasks", orgID=org_id, name=name)
    # The name filter is a prefix match on some versions: compare exactly.
    return next((t for t in tasks if t.get("name") == name), None)


def _remove_old_tasks(api: InfluxApi, org_id: str) -> None:
    """Delete the rollup tasks of earlier versions: the rollup service does their work."""
    for name in OLD_ROLLUP_TASKS:
        task = find_task(api, org_id, name)
        if task is not None:
            api.delete(f"/api/v2/tasks/{task['id']}")
            logger.info("task %s removed (replaced by the rollup service)", name)


def _ensure_token(
    api: InfluxApi, org_id: str, description: str, permissions: list[JSON], known: str | None
) -> str:
    """A token with exactly `permissions`, reusing ours when it still fits."""
    auths = api.find("/api/v2/authorizations", "authorizations", orgID=org_id)
    wanted = sorted(_permission_key(p) for p in permissions)
    keep: str | None = None
    for auth in auths:
        if auth.get("description") != description:
            continue
        same = sorted(_permission_key(p) for p in auth.get("permissions", [])) == wanted
        # InfluxDB 2.9 shows a token only when it is made; later listings give "". Trust the
        # credentials file then, and compare when the token is shown.
        shown = auth.get("token") or None
        token = shown or known
        fits = same and auth.get("status") == "active" and token is not None and keep is None
        if fits and (shown is None or known is None or shown == known):
            keep = token
            continue
        api.delete(f"/api/v2/authorizations/{auth['id']}")
        logger.info("token %s replaced (permissions or status changed)", description)
    if keep is not None:
        return keep
    created = api.post(
        "/api/v2/authorizations",
        {"orgID": org_id, "description": description, "permissions": permissions},
    )
    logger.info("token %s created", description)
    return str(created["token"])


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
    api = InfluxApi(url)
    if _ensure_setup(api, org, buckets.raw, stored):
        stored.update(url=url, org=org)
        write_credentials_file(credentials_path, stored)  # before anything else can fail
    token = admin_token or stored.get("admin_token")
    if not token:
        raise RuntimeError(
            f"InfluxDB at {url} is already set up, but {credentials_path} holds no admin "
            "token: set INFLUXDB_V2_TOKEN to an all-access token of it, or start from an "
            "empty data dir"
        )
    api = InfluxApi(url, token)
    orgs = api.find("/api/v2/orgs", "orgs", org=org)
    if not orgs:
        org_id = str(api.post("/api/v2/orgs", {"name": org})["id"])
        logger.info("org %s created", org)
    else:
        org_id = str(orgs[0]["id"])
    bucket_ids = _ensure_buckets(api, org_id, buckets)
    _remove_old_tasks(api, org_id)
    ingest = _ensure_token(
        api,
        org_id,
        INGEST_TOKEN_DESCRIPTION,
        wanted_permissions("ingest", bucket_ids, buckets, org_id),
        stored.get("ingest_token"),
    )
    dashboard = _ensure_token(
        api,
        org_id,
        DASHBOARD_TOKEN_DESCRIPTION,
        wanted_permissions("dashboard", bucket_ids, buckets, org_id),
        stored.get("dashboard_token"),
    )
    rollup = _ensure_token(
        api,
        org_id,
        ROLLUP_TOKEN_DESCRIPTION,
        wanted_permissions("rollup", bucket_ids, buckets, org_id),
        stored.get("rollup_token"),
    )
    alerter = _ensure_token(
        api,
        org_id,
        ALERTER_TOKEN_DESCRIPTION,
        wanted_permissions("alerter", bucket_ids, buckets, org_id),
        stored.get("alerter_token"),
    )
    creds = StackCredentials(
        url=url,
        org=org,
        org_id=org_id,
        admin_user=stored.get("admin_user", ADMIN_USER),
        admin_password=stored.get("admin_password", ""),
        admin_token=token,
        ingest_token=ingest,
        dashboard_token=dashboard,
        rollup_token=rollup,
        alerter_token=alerter,
    )
    new = {k: str(v) for k, v in asdict(creds).items()}
    if new != stored:
        write_credentials_file(credentials_path, new)
    return creds
