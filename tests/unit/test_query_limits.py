"""influxd's query limits: the local stack and compose give the same figures."""

from __future__ import annotations

from pathlib import Path

import yaml

from stack.processes import INFLUXD_GO_MEMORY_LIMIT, query_limit_flags

REPO = Path(__file__).resolve().parents[2]


def test_compose_gives_influxd_the_local_stacks_query_limits() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    env = compose["services"]["influxdb"]["environment"]
    flags = query_limit_flags()
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        assert env["INFLUXD_" + flag.removeprefix("--").replace("-", "_").upper()] == value
    assert env["GOMEMLIMIT"] == INFLUXD_GO_MEMORY_LIMIT
