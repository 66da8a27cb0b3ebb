"""dashboard room: who is acting. Sign-in, sessions that expire, and the role of the user.

Three ways, chosen by configuration:
- an identity provider (OIDC) configured for Streamlit (`[auth]` in `.streamlit/secrets.toml`):
  `st.login`; the role comes from the local account store by the identity's email, else
  viewer;
- otherwise the local account store (`edgewatch users add`), with bcrypt-hashed passwords;
- `EDGEWATCH_AUTH=none`, for development only: everyone is `EDGEWATCH_USER`, an operator.

Pages ask `current_user` who is acting and whether they may act (`User.may_act`); the data
layer's write refuses anyone who may not, whatever the page shows. The user recorded on an
alert action is always the signed-in one, never typed in.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import streamlit as st

from dashboard.auth import User, UserStore, session_expired
from edgewatch.settings import Settings

logger = logging.getLogger(__name__)

SESSION_USER_KEY = "auth_user"
SESSION_SINCE_KEY = "auth_since_ns"


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
    st.session_state.pop(SESSION_USER_KEY, None)
    st.session_state.pop(SESSION_SINCE_KEY, None)
    if _oidc_configured():
        st.logout()


def _local_user(settings: Settings) -> User:
    store = UserStore(settings.users_path)
    name = st.session_state.get(SESSION_USER_KEY)
    since = st.session_state.get(SESSION_SINCE_KEY)
    expired = False
    if isinstance(name, str) and isinstance(since, int):
        expired = session_expired(since, time.time_ns(), settings.session_max_age_seconds)
        # The role is read on every run: a removed or demoted user loses rights at once.
        role = None if expired else store.role_of(name)
        if role is not None:
            return User(name, role)
        sign_out()
    _login_form(store, settings, expired=expired)
    st.stop()
    raise AssertionError("unreachable: st.stop() ends the run")  # pragma: no cover


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
    name = st.text_input("User name", key="login_user")
    password = st.text_input("Password", type="password", key="login_password")
    if st.button("Sign in", key="login_submit", type="primary"):
        user = store.authenticate(name.strip(), password)
        if user is None:
            logger.warning("dashboard sign-in refused for %r", name)
            st.error("Wrong user name or password.")
            return
        logger.info("dashboard sign-in: %s (%s)", user.name, user.role)
        st.session_state[SESSION_USER_KEY] = user.name
        st.session_state[SESSION_SINCE_KEY] = time.time_ns()
        st.session_state.pop("login_password", None)
        st.rerun()


def may_have_user(settings: Settings) -> bool:
    """Whether this run probably has a user (cheap, no store read): decides whether the page
    navigation is shown. `current_user` is still the one that decides who acts."""
    if settings.auth_mode == "none":
        return True
    if _oidc_configured():
        return bool(getattr(st.user, "is_logged_in", False))
    return SESSION_USER_KEY in st.session_state


def current_user(settings: Settings) -> User:
    """The signed-in user; shows the sign-in and ends the run when there is none."""
    if settings.auth_mode == "none":
        return User(name=settings.dashboard_user, role="operator")
    if _oidc_configured():
        return _oidc_user(settings)
    return _local_user(settings)
