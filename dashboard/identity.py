"""dashboard room: who is acting. Sign-in, sessions that expire, and the role of the user.

Three ways, chosen by configuration:
- an identity provider (OIDC) configured for Streamlit (`[auth]` in `.streamlit/secrets.toml`):
  `st.login`; the role comes from the local account store by the identity's email, else
  viewer;
- otherwise the local account store (`edgewatch users add`), with bcrypt-hashed passwords;
  the sign-in is kept in a signed, expiring cookie (`session_token.py`) so that reloads, new
  tabs and shared links stay signed in; it is read server-side from the request
  (`st.context.cookies`) and written by extra-streamlit-components' cookie manager;
- `EDGEWATCH_AUTH=none`, for development only: everyone is `EDGEWATCH_USER`, an operator.

Pages ask `current_user` who is acting and whether they may act (`User.may_act`); the data
layer's write refuses anyone who may not, whatever the page shows. The user recorded on an
alert action is always the signed-in one, never typed in.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import extra_streamlit_components as stx
import streamlit as st

from dashboard.auth import User, UserStore, session_expired, session_secret
from dashboard.session_token import (
    COOKIE_NAME,
    SessionClaims,
    TokenRefusedError,
    is_current,
    issue_token,
    verify_token,
)
from edgewatch.settings import Settings, load_settings

logger = logging.getLogger(__name__)

SESSION_USER_KEY = "auth_user"
SESSION_SINCE_KEY = "auth_since_ns"
SESSION_GENERATION_KEY = "auth_generation"
# The token this browser session should hold in its cookie (written once per sign-in).
SESSION_TOKEN_KEY = "auth_token"  # noqa: S105 - a session_state key, not a secret
# Set by sign-out: the next run overwrites the cookie with an expired one.
COOKIE_CLEAR_KEY = "auth_cookie_clear"
COOKIE_REFUSED_KEY = "auth_cookie_refused"


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:
        return False


def _oidc_user(settings: Settings) -> User:
    user: Any = st.user
    if not getattr(user, "is_logged_in", False):
        st.title("edgewatch")
        st.write("Sign in with your organisation's account to see the fleet.")
        st.button("Sign in", key="login_oidc", on_click=st.login)
        st.stop()
    email = str(getattr(user, "email", None) or getattr(user, "name", "unknown"))
    role = UserStore(settings.users_path).role_of(email) or "viewer"
    return User(email, role)


def sign_out() -> None:
    """End this user's sessions everywhere (every cookie issued so far stops being current)
    and forget the user in this browser session."""
    name = st.session_state.get(SESSION_USER_KEY)
    if isinstance(name, str):
        try:
            UserStore(load_settings().users_path).end_sessions(name)
            logger.info("dashboard sign-out: %s (all sessions)", name)
        except Exception:  # the cookie is still cleared below; the log says why not everywhere
            logger.exception("could not end the sessions of %s in the account store", name)
    _forget_session()
    st.session_state[COOKIE_CLEAR_KEY] = True
    if _oidc_configured():
        st.logout()


def _forget_session() -> None:
    for key in (SESSION_USER_KEY, SESSION_SINCE_KEY, SESSION_GENERATION_KEY, SESSION_TOKEN_KEY):
        st.session_state.pop(key, None)


def _secret(settings: Settings) -> bytes:
    """The cookie-signing key; a bad one stops the page with the fix, never a traceback."""
    configured = settings.session_secret.get_secret_value() if settings.session_secret else None
    try:
        return session_secret(configured, settings.session_secret_path)
    except (ValueError, OSError) as exc:
        st.error(f"Sign-in is not possible: {exc}")
        st.stop()
        raise AssertionError("unreachable: st.stop() ends the run") from exc  # pragma: no cover


def _cookie_claims(settings: Settings, store: UserStore) -> SessionClaims | None:
    """The session the request's cookie proves, or None (a refused cookie is remembered so
    the sign-in form can say so)."""
    token = st.context.cookies.get(COOKIE_NAME)
    if not isinstance(token, str) or not token or st.session_state.get(COOKIE_CLEAR_KEY):
        return None
    try:
        claims = verify_token(token, _secret(settings), time.time())
    except TokenRefusedError as exc:
        logger.warning("dashboard session cookie refused: %s", exc)
        st.session_state[COOKIE_REFUSED_KEY] = True
        return None
    if not is_current(claims, store.generation_of(claims.user)):
        logger.info("dashboard session cookie of %s is no longer current", claims.user)
        st.session_state[COOKIE_REFUSED_KEY] = True
        return None
    return claims


def _adopt(claims: SessionClaims, token: str | None) -> None:
    st.session_state[SESSION_USER_KEY] = claims.user
    st.session_state[SESSION_SINCE_KEY] = claims.issued_s * 1_000_000_000
    st.session_state[SESSION_GENERATION_KEY] = claims.generation
    if token is not None:
        st.session_state[SESSION_TOKEN_KEY] = token


def _session_user(settings: Settings, store: UserStore) -> tuple[User | None, bool]:
    """(the user this browser session holds, if still valid; whether it expired)."""
    name = st.session_state.get(SESSION_USER_KEY)
    since = st.session_state.get(SESSION_SINCE_KEY)
    if not isinstance(name, str) or not isinstance(since, int):
        return None, False
    if session_expired(since, time.time_ns(), settings.session_max_age_seconds):
        return None, True
    # The role and generation are read on every run: a removed or demoted user loses
    # rights at once, and a sign-out in another browser ends this session too.
    role = store.role_of(name)
    current = store.generation_of(name) == st.session_state.get(SESSION_GENERATION_KEY)
    return (User(name, role) if role is not None and current else None), False


def session_still_valid(settings: Settings) -> bool:
    """Whether the user this page was opened for may still see it: for live fragments, whose
    refreshes run the fragment alone and so never pass `current_user` again."""
    if settings.auth_mode == "none":
        return True
    if _oidc_configured():
        return bool(getattr(st.user, "is_logged_in", False))
    user, _ = _session_user(settings, UserStore(settings.users_path))
    return user is not None


def _local_user(settings: Settings) -> User:
    store = UserStore(settings.users_path)
    if SESSION_USER_KEY not in st.session_state:
        claims = _cookie_claims(settings, store)
        if claims is not None:
            _adopt(claims, None)
    user, expired = _session_user(settings, store)
    if user is not None:
        return user
    if SESSION_USER_KEY in st.session_state:
        _forget_session()
    _login_form(store, settings, expired=expired)
    write_session_cookie(settings)
    st.stop()
    raise AssertionError("unreachable: st.stop() ends the run")  # pragma: no cover


def write_session_cookie(settings: Settings) -> None:
    """Keep the browser's cookie in step with this session: write the token after a sign-in,
    overwrite it with an expired one after a sign-out. Call on every run (the component must
    stay rendered with the same arguments, or it writes again)."""
    if settings.auth_mode == "none" or _oidc_configured():
        return
    token = st.session_state.get(SESSION_TOKEN_KEY)
    clear = bool(st.session_state.get(COOKIE_CLEAR_KEY))
    if not token and not clear:
        return
    manager = stx.CookieManager(key="auth_cookie_manager")
    if token:
        since_ns = st.session_state.get(SESSION_SINCE_KEY, time.time_ns())
        expires = datetime.fromtimestamp(since_ns / 1e9 + settings.session_max_age_seconds, tz=UTC)
        manager.set(
            COOKIE_NAME,
            token,
            key="auth_cookie_set",
            expires_at=expires,
            same_site="lax",  # sent when a link from a notification opens the dashboard
            secure=settings.session_cookie_secure or None,
        )
    else:
        manager.set(
            COOKIE_NAME,
            "",
            key="auth_cookie_expire",
            expires_at=datetime(1970, 1, 2, tzinfo=UTC),
            same_site="lax",
        )


def _login_form(store: UserStore, settings: Settings, *, expired: bool) -> None:
    st.title("edgewatch")
    if store.is_empty():
        st.warning(
            "No dashboard accounts exist yet. Create one on the server with "
            "`edgewatch users add NAME --role operator` (or `--role viewer`), then sign in. "
            f"Accounts are kept in {settings.users_path}."
        )
        return
    if expired:
        st.info("Your session expired: sign in again.")
    elif st.session_state.pop(COOKIE_REFUSED_KEY, False):
        st.info(
            "Your saved sign-in is no longer valid (signed out, expired or altered): sign in again."
        )
    name = st.text_input("User name", key="login_user")
    password = st.text_input("Password", type="password", key="login_password")
    if st.button("Sign in", key="login_submit", type="primary"):
        user = store.authenticate(name.strip(), password)
        if user is None:
            logger.warning("dashboard sign-in refused for %r", name)
            st.error("Wrong user name or password.")
            return
        logger.info("dashboard sign-in: %s (%s)", user.name, user.role)
        now_s = int(time.time())
        claims = SessionClaims(
            user=user.name,
            issued_s=now_s,
            expires_s=now_s + int(settings.session_max_age_seconds),
            generation=store.generation_of(user.name) or 0,
        )
        _adopt(claims, issue_token(claims, _secret(settings)))
        st.session_state.pop(COOKIE_CLEAR_KEY, None)
        st.session_state.pop("login_password", None)
        st.rerun()


def may_have_user(settings: Settings) -> bool:
    """Whether this run probably has a user (cheap, no store read): decides whether the page
    navigation is shown. `current_user` is still the one that decides who acts."""
    if settings.auth_mode == "none":
        return True
    if _oidc_configured():
        return bool(getattr(st.user, "is_logged_in", False))
    if SESSION_USER_KEY in st.session_state:
        return True
    token = st.context.cookies.get(COOKIE_NAME)
    if not isinstance(token, str) or not token or st.session_state.get(COOKIE_CLEAR_KEY):
        return False
    try:
        verify_token(token, _secret(settings), time.time())
    except (TokenRefusedError, ValueError, OSError):
        return False
    return True


def current_user(settings: Settings) -> User:
    """The signed-in user; shows the sign-in and ends the run when there is none."""
    if settings.auth_mode == "none":
        return User(name=settings.dashboard_user, role="operator")
    if _oidc_configured():
        return _oidc_user(settings)
    return _local_user(settings)
