"""The rules model: defaults with no file, YAML validation naming the rule and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewatch.rules import RulesFileError, parse_duration, parse_rules

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "rules.example.yaml"


def test_no_file_gives_the_builtins_and_the_default_route() -> None:
    config = parse_rules("")
    assert config.rule_names() == (
        "device_offline", "site_down", "ingest_down", "model_drift", "model_integrity",
    )  # fmt: skip
    (route,) = config.effective_routes
    assert route.receivers == ("default",)
    assert route.match.severity == ("critical", "major")


def test_the_documented_example_is_valid() -> None:
    config = parse_rules(EXAMPLE.read_text(), str(EXAMPLE))
    assert config.rules


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: [{name: gpu_hot, metric: gpu_c, threshold: hot}]", "rules[gpu_hot].threshold"),
        ("rules: [{name: gpu_hot, metric: gpu_c, threshold: 1, for: soon}]", "rules[gpu_hot].for"),
        (
            "rules: [{name: gpu_hot, metric: gpu_c, threshold: 80, clear_threshold: 90}]",
            "hysteresis",
        ),
        ("rules: [{name: Bad, metric: gpu_c, threshold: 1}]", "rules[Bad]"),
        ("rules: [{name: x, metric: gpu_c, threshold: 1, colour: red}]", "rules[x].colour"),
        ("routes: [{receivers: [pager]}]", "receiver 'pager' is not declared"),
        ("builtins: {site_down: {share: 2}}", "builtins.site_down.share"),
        ("- a list", "top level must be a mapping"),
        ("rules: [", "not valid YAML"),
    ],
)
def test_errors_name_the_rule_and_the_field(text: str, expected: str) -> None:
    with pytest.raises(RulesFileError, match=None) as info:
        parse_rules(text)
    assert expected in str(info.value)


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("5m") == 300
    assert parse_duration(2) == 2
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
