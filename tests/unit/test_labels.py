"""Device groups by label: effective labels (status overlaid by operators) and selectors."""

from __future__ import annotations

import pytest

from edgewatch.labels import (
    effective_labels,
    fleet_labels,
    label_overlays,
    label_terms,
    matches,
    parse_selector,
    select,
    selector_text,
)
from edgewatch.model_fleet import StatusRow, inventory, parse_ops


def action(t: int, device: str, key: str, value: str = "", act: str = "set") -> dict[str, object]:
    return {
        "_measurement": "label_action", "time_ns": t, "site": "s1", "device": device,
        "key": key, "value": value, "action": act,
    }  # fmt: skip


def test_the_latest_operator_action_per_key_wins_whatever_the_row_order() -> None:
    rows = [
        action(3, "cam1", "ring", "stable"),
        action(1, "cam1", "ring", "canary"),
        action(2, "cam1", "ring", act="remove"),
        action(1, "cam2", "site_zone", "north"),
        {"_measurement": "release_action", "time_ns": 4, "model": "m", "version": "1"},
        action(5, "cam2", "", "no key"),
    ]
    assert label_overlays(rows) == {
        ("s1", "cam1"): {"ring": "stable"},
        ("s1", "cam2"): {"site_zone": "north"},
    }


def test_an_operator_sets_overrides_and_removes_status_labels() -> None:
    status = {"ring": "canary", "hardware": "jetson-orin"}
    assert effective_labels(status) == status
    assert effective_labels(status, {"ring": "stable"}) == {
        "hardware": "jetson-orin",
        "ring": "stable",
    }
    assert effective_labels(status, {"ring": None, "zone": "n"}) == {
        "hardware": "jetson-orin",
        "zone": "n",
    }
    # Removing a label the device never had is harmless.
    assert effective_labels({}, {"ring": None}) == {}


def test_fleet_labels_cover_devices_known_either_way() -> None:
    labels = fleet_labels(
        {("s1", "a"): {"ring": "canary"}, ("s1", "b"): {"ring": "canary"}},
        {("s1", "b"): {"ring": None}, ("s1", "c"): {"ring": "canary"}},
    )
    assert labels == {
        ("s1", "a"): {"ring": "canary"},
        ("s1", "b"): {},
        ("s1", "c"): {"ring": "canary"},
    }
    assert select(sorted(labels), labels, parse_selector("ring=canary")) == [
        ("s1", "a"),
        ("s1", "c"),
    ]
    assert label_terms(labels.values()) == ["ring=canary"]


def test_a_selector_needs_every_term() -> None:
    selector = parse_selector(" ring=canary , hardware=jetson-orin")
    assert selector == (("hardware", "jetson-orin"), ("ring", "canary"))
    assert selector_text(selector) == "hardware=jetson-orin,ring=canary"
    assert parse_selector(["ring=canary", "hardware=jetson-orin"]) == selector
    assert matches({"ring": "canary", "hardware": "jetson-orin", "x": "y"}, selector)
    assert not matches({"ring": "canary"}, selector)
    assert matches({}, parse_selector(""))
    assert matches({"ring": "canary"}, {"ring": "canary"})


@pytest.mark.parametrize("bad", ["ring", "Ring=canary", "ring=", "=canary", "ring=" + "x" * 65])
def test_a_bad_selector_term_is_named_with_the_fix(bad: str) -> None:
    with pytest.raises(ValueError, match="key=value"):
        parse_selector(bad)


def test_the_models_inventory_uses_the_effective_labels() -> None:
    history = [StatusRow(1, "s1", "cam1", "m", "1", None, {"ring": "canary", "hw": "orin"})]
    ops = parse_ops([action(2, "cam1", "ring", act="remove"), action(3, "cam1", "zone", "n")])
    (device,) = inventory(history, ops)
    assert device.labels == {"hw": "orin", "zone": "n"}
