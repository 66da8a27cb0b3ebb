"""The sign-in cookie's token: signed, expiring, bound to the user's session generation."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.auth import UserStore, session_secret
from dashboard.session_token import (
    SessionClaims,
    TokenRefusedError,
    is_current,
    issue_token,
    verify_token,
)

SECRET = b"k" * 32
CLAIMS = SessionClaims(user="ana", issued_s=1_000, expires_s=2_000, generation=3)


def test_a_token_round_trips_and_holds_no_password() -> None:
    token = issue_token(CLAIMS, SECRET)
    assert verify_token(token, SECRET, now_s=1_500) == CLAIMS
    assert "password" not in token and "hash" not in token


def test_a_tampered_token_is_refused() -> None:
    payload, _, signature = issue_token(CLAIMS, SECRET).partition(".")
    forged = issue_token(SessionClaims("root", 1_000, 2_000, 3), b"x" * 32)
    for bad in (
        payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature,
        forged.partition(".")[0] + "." + signature,
        forged,
        payload,
        "",
        "...",
    ):
        with pytest.raises(TokenRefusedError):
            verify_token(bad, SECRET, now_s=1_500)


def test_an_expired_token_is_refused() -> None:
    token = issue_token(CLAIMS, SECRET)
    with pytest.raises(TokenRefusedError, match="expired"):
        verify_token(token, SECRET, now_s=2_000)


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        issue_token(CLAIMS, b"short")


def test_sign_out_and_removal_end_sessions(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("ana", "a-good-password", "operator")
    claims = SessionClaims("ana", 1, 2, store.generation_of("ana") or 0)
    assert is_current(claims, store.generation_of("ana"))
    store.end_sessions("ana")
    assert not is_current(claims, store.generation_of("ana"))
    fresh = SessionClaims("ana", 1, 2, store.generation_of("ana") or 0)
    store.add("ana", "another-password", "operator")  # re-created: old sessions end
    assert not is_current(fresh, store.generation_of("ana"))
    store.remove("ana")
    assert not is_current(fresh, store.generation_of("ana"))


def test_the_session_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "session-secret"
    first = session_secret(None, path)
    assert len(first) >= 32 and path.stat().st_mode & 0o077 == 0
    assert session_secret(None, path) == first
    assert session_secret("c" * 40, path) == b"c" * 40
    with pytest.raises(ValueError, match="EDGEWATCH_SESSION_SECRET"):
        session_secret("short", path)
