"""The Fleet overview's state badges: every state keeps its health colour, each row one badge."""

from __future__ import annotations

import pandas as pd

from dashboard import ui
from dashboard.charts import HEALTH_COLORS, HEALTH_ORDER


def test_each_state_is_one_badge_in_its_health_colour() -> None:
    frame = pd.DataFrame({"device": ["a", "b", "c"], "state": ["OFFLINE", "ONLINE", "MAINTENANCE"]})
    badges, config = ui.state_badges(frame)
    assert [list(v) for v in badges["state"]] == [["OFFLINE"], ["ONLINE"], ["MAINTENANCE"]]
    assert list(frame["state"]) == ["OFFLINE", "ONLINE", "MAINTENANCE"]  # the input is kept
    options = config["type_config"]["options"]
    assert [o["value"] for o in options] == [*HEALTH_ORDER, "MAINTENANCE"]
    assert {o["value"]: o["color"] for o in options} == {
        **{str(k): v for k, v in HEALTH_COLORS.items()},
        "MAINTENANCE": ui.NEUTRAL_BADGE_COLOR,
    }


def test_an_empty_table_stays_empty() -> None:
    frame = pd.DataFrame({"device": [], "state": []})
    badges, _ = ui.state_badges(frame)
    assert badges.empty
