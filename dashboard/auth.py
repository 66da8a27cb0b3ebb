"""Dashboard accounts: a local user store with bcrypt-hashed passwords, roles and sessions.

Room: `dashboard`. Touches only the users file it is given (mode 0600). When an identity
provider is configured for Streamlit (`[auth]` in `.streamlit/secrets.toml`) the app uses
`st.login` instead and maps the identity's email to a role here; without one, this store is
the login. Roles: `viewer` reads, `operator` also acts on alerts.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import bcrypt

from shared.private_file import write_private_file

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
USERNAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
MIN_PASSWORD_CHARS = 8
# bcrypt only reads the first 72 bytes; longer passwords would silently collide.
MAX_PASSWORD_BYTES = 72
BCRYPT_ROUNDS = 12


@functools.cache
def _dummy_hash() -> bytes:
    """Checked against when the user is unknown, so a wrong name costs as long as a wrong
    password. Made on first use, not at import: importing the store costs no hash."""
    return bcrypt.hashpw(b"edgewatch-no-such-user", bcrypt.gensalt(rounds=BCRYPT_ROUNDS))


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role

    @property
    def may_act(self) -> bool:
        """Whether this user may acknowledge, snooze, resolve and comment."""
        return self.role == "operator"


class PermissionDeniedError(PermissionError):
    """An action the signed-in user's role does not allow."""


def require_operator(user: User) -> None:
    if not user.may_act:
        raise PermissionDeniedError(
            f"{user.name} is a {user.role}: only operators may act on alerts"
        )


def session_expired(signed_in_ns: int, now_ns: int, max_age_s: float) -> bool:
    return now_ns - signed_in_ns > max_age_s * 1_000_000_000


class UserStore:
    """Users in a JSON file: `{name: {"role": ..., "hash": bcrypt}}`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {}
        data: dict[str, dict[str, str]] = json.loads(self.path.read_text())
        return data

    def _save(self, data: dict[str, dict[str, str]]) -> None:
        write_private_file(self.path, json.dumps(data, indent=2, sort_keys=True))

    def users(self) -> list[User]:
        return [User(name, cast(Role, e["role"])) for name, e in sorted(self._load().items())]

    def is_empty(self) -> bool:
        return not self._load()

    def add(self, name: str, password: str, role: str) -> User:
        """Create or replace a user. Errors say what to change."""
        if USERNAME_PATTERN.fullmatch(name) is None:
            raise ValueError(
                f"user name {name!r} must be 1-64 letters, digits or _.@- (starting alphanumeric)"
            )
        if role not in ROLES:
            raise ValueError(f"role {role!r} must be one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD_CHARS:
            raise ValueError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            raise ValueError(f"the password must be at most {MAX_PASSWORD_BYTES} bytes")
        data = self._load()
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()
        # Re-creating a user ends the sessions signed in under the old password.
        generation = _generation(data.get(name)) + 1 if name in data else 0
        data[name] = {"role": role, "hash": hashed, "generation": str(generation)}
        self._save(data)
        return User(name, role)

    def remove(self, name: str) -> bool:
        data = self._load()
        if data.pop(name, None) is None:
            return False
        self._save(data)
        return True

    def role_of(self, name: str) -> Role | None:
        entry = self._load().get(name)
        return None if entry is None else cast(Role, entry["role"])

    def generation_of(self, name: str) -> int | None:
        """The user's session generation (None: no such user). A session cookie is valid only
        while its generation is the current one."""
        entry = self._load().get(name)
        return None if entry is None else _generation(entry)

    def end_sessions(self, name: str) -> None:
        """Sign the user out everywhere: every session issued so far stops being current."""
        data = self._load()
        entry = data.get(name)
        if entry is None:
            return
        entry["generation"] = str(_generation(entry) + 1)
        self._save(data)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if name and password match, else None (never says which was wrong)."""
        entry = self._load().get(name)
        candidate = password.encode()[:MAX_PASSWORD_BYTES]
        if entry is None:
            bcrypt.checkpw(candidate, _dummy_hash())
            return None
        if not bcrypt.checkpw(candidate, entry["hash"].encode()):
            return None
        return User(name, cast(Role, entry["role"]))


def _generation(entry: dict[str, str] | None) -> int:
    # Stores written before sessions had generations have none: that is generation 0.
    return 0 if entry is None else int(entry.get("generation", "0"))


SESSION_SECRET_BYTES = 32


def session_secret(configured: str | None, path: Path) -> bytes:
    """The key that signs session cookies: the configured one, else the one in `path`, made
    (random, 0600) the first time. Never in git: `path` sits beside the account store."""
    if configured:
        if len(configured.encode()) < SESSION_SECRET_BYTES:
            raise ValueError(
                f"EDGEWATCH_SESSION_SECRET must have at least {SESSION_SECRET_BYTES} characters"
                " (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        return configured.encode()
    if not path.exists():
        write_private_file(path, secrets.token_hex(SESSION_SECRET_BYTES))
    return path.read_text().strip().encode()
