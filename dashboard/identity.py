"""dashboard room: who is acting. Until the login is wired in, the user comes from settings.

A login layer replaces `current_user` and nothing else: pages ask it who is acting and
whether they may act (`User.may_act`), and the data layer's write refuses anyone who may not.
"""

from __future__ import annotations

from dashboard.auth import User
from edgewatch.settings import Settings


def current_user(settings: Settings) -> User:
    """The acting user: `EDGEWATCH_USER`, as an operator (no login yet)."""
    return User(name=settings.dashboard_user, role="operator")
