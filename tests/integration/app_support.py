"""The dashboard under Streamlit's AppTest, signed in as after the sign-in form.

AppTest runs the script in the test's own process, so the settings come from the
environment; `monkeypatch` sets it and undoes it after the test.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.identity import SESSION_GENERATION_KEY, SESSION_SINCE_KEY, SESSION_USER_KEY

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "streamlit_app.py")
APP_TIMEOUT_S = 60


def signed_in_app(
    monkeypatch: pytest.MonkeyPatch,
    env: Mapping[str, str],
    user: str | None,
    *,
    timeout_s: float = APP_TIMEOUT_S,
) -> AppTest:
    """The app with `user` signed in, or nobody (None), under `env`; not yet run."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("EDGEWATCH_AUTH", raising=False)
    at = AppTest.from_file(APP, default_timeout=timeout_s)
    if user is not None:
        at.session_state[SESSION_USER_KEY] = user
        at.session_state[SESSION_SINCE_KEY] = time.time_ns()
        at.session_state[SESSION_GENERATION_KEY] = 0  # a user never signed out
    return at
