"""Dashboard accounts: hashed passwords, roles, and what a viewer may not do."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.auth import PermissionDeniedError, User, UserStore, require_operator, session_expired


def test_users_authenticate_with_hashed_passwords(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("ana", "correct horse", "operator")
    assert "correct horse" not in store.path.read_text()
    assert store.path.stat().st_mode & 0o077 == 0
    assert store.authenticate("ana", "correct horse") == User("ana", "operator")
    assert store.authenticate("ana", "wrong password") is None
    assert store.authenticate("nobody", "correct horse") is None


def test_bad_accounts_are_refused_with_the_fix(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    with pytest.raises(ValueError, match="at least 8"):
        store.add("ana", "short", "operator")
    with pytest.raises(ValueError, match="must be one of viewer, operator"):
        store.add("ana", "long enough", "admin")
    with pytest.raises(ValueError, match="user name"):
        store.add("ana smith", "long enough", "viewer")


def test_viewer_may_not_act() -> None:
    require_operator(User("ana", "operator"))
    with pytest.raises(PermissionDeniedError, match="only operators"):
        require_operator(User("bo", "viewer"))


def test_sessions_expire() -> None:
    assert not session_expired(0, 10 * 10**9, 60)
    assert session_expired(0, 61 * 10**9, 60)


def test_remove_user(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("ana", "correct horse", "viewer")
    assert store.remove("ana") and not store.remove("ana")
    assert store.is_empty()
