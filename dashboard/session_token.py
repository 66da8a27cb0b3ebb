"""dashboard room, pure: the signed session token the sign-in cookie carries.

A token is `<payload>.<signature>`, both base64url without padding: the payload is JSON with
the user name, when it was issued, when it expires (seconds since the epoch) and the user's
session generation in the account store; the signature is HMAC-SHA256 over the payload's
text with the dashboard's session secret. It holds no password and no role: the role is read
from the account store on every run, and a token whose generation is not the store's current
one (the user signed out somewhere, or was re-created) is refused. Value in, value out: no
clock, no store, no Streamlit here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

COOKIE_NAME = "edgewatch_session"
MIN_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class SessionClaims:
    user: str
    issued_s: int
    expires_s: int
    generation: int


class TokenRefusedError(ValueError):
    """A token that must not sign anyone in; the message says why (for the log)."""


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(payload: str, secret: bytes) -> str:
    return _b64encode(hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest())


def issue_token(claims: SessionClaims, secret: bytes) -> str:
    """The cookie value for `claims`, signed with `secret`."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the session secret must have at least {MIN_SECRET_BYTES} bytes")
    body = {
        "u": claims.user,
        "iat": claims.issued_s,
        "exp": claims.expires_s,
        "g": claims.generation,
    }
    payload = _b64encode(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_signature(payload, secret)}"


def verify_token(token: str, secret: bytes, now_s: float) -> SessionClaims:
    """The claims of a token signed with `secret` and not expired at `now_s`.

    Raises `TokenRefusedError` for anything else (malformed, tampered, expired). The caller
    still checks the generation and the user's existence against the account store.
    """
    payload, dot, signature = token.partition(".")
    if not dot or not payload or not signature:
        raise TokenRefusedError("malformed session token")
    # Compare in constant time: a timing difference must not reveal the signature.
    if not hmac.compare_digest(signature, _signature(payload, secret)):
        raise TokenRefusedError("session token signature does not match")
    try:
        body = json.loads(_b64decode(payload))
        claims = SessionClaims(
            user=str(body["u"]),
            issued_s=int(body["iat"]),
            expires_s=int(body["exp"]),
            generation=int(body["g"]),
        )
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise TokenRefusedError(f"unreadable session token: {exc}") from exc
    if now_s >= claims.expires_s:
        raise TokenRefusedError(f"session of {claims.user} expired")
    return claims


def is_current(claims: SessionClaims, store_generation: int | None) -> bool:
    """Whether the store still backs this session: the user exists and has not signed out
    (or been re-created) since the token was issued."""
    return store_generation is not None and claims.generation == store_generation
