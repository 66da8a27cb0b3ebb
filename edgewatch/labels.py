"""Device groups by label: a device's effective labels, and label selectors.

Part of the shared core, pure: the dashboard (every page's label filter, the Models page) and
the alerter (rule matchers, silences) judge a device's groups here, so both agree. Values in,
values out; no I/O. A device's own labels come with its status (contract v1.1); an operator's
`label_action` points (ops bucket) overlay them: per key the latest action wins over what the
device says, `set` gives the key a value, `remove` takes the key away even if the device
reports it. A selector is a list of `key=value` terms, all of which must hold (AND).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Key = tuple[str, str]
Selector = tuple[tuple[str, str], ...]
# An operator's overlay on one device: key -> value (set) or None (removed).
Overlay = Mapping[str, str | None]

MEASUREMENT_LABEL_ACTION = "label_action"
ACTION_SET = "set"
ACTION_REMOVE = "remove"
MAX_SELECTOR_TERMS = 16
MAX_LABEL_VALUE_CHARS = 64
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def label_overlays(rows: Iterable[Mapping[str, Any]]) -> dict[Key, dict[str, str | None]]:
    """Operators' label actions (rows of `label_action` points) folded per device and key.

    Rows are applied oldest first (by `time_ns` when present), so the latest action per key
    wins; rows of other measurements and rows without a key are skipped.
    """
    ordered = sorted(
        (
            r
            for r in rows
            if r.get("_measurement", MEASUREMENT_LABEL_ACTION) == MEASUREMENT_LABEL_ACTION
        ),
        key=lambda r: int(r.get("time_ns") or 0),
    )
    overlays: dict[Key, dict[str, str | None]] = {}
    for row in ordered:
        name = _text(row.get("key"))
        if not name:
            continue
        overlay = overlays.setdefault((str(row.get("site")), str(row.get("device"))), {})
        if row.get("action") == ACTION_REMOVE:
            overlay[name] = None
        else:
            overlay[name] = _text(row.get("value")) or ""
    return overlays


def effective_labels(status: Mapping[str, str], overlay: Overlay | None = None) -> dict[str, str]:
    """A device's labels: its status labels with the operator's overlay applied."""
    labels = dict(status)
    for key, value in (overlay or {}).items():
        if value is None:
            labels.pop(key, None)
        else:
            labels[key] = value
    return dict(sorted(labels.items()))


def fleet_labels(
    status: Mapping[Key, Mapping[str, str]], overlays: Mapping[Key, Overlay]
) -> dict[Key, dict[str, str]]:
    """Effective labels of every device known from its status or an operator's action."""
    return {
        key: effective_labels(status.get(key, {}), overlays.get(key))
        for key in sorted(set(status) | set(overlays))
    }


def parse_selector(terms: str | Iterable[str]) -> Selector:
    """`ring=canary,hardware=jetson-orin` (or a list of terms) as sorted (key, value) pairs.

    Raises ValueError naming the term to fix; an empty selector selects every device.
    """
    items = terms.split(",") if isinstance(terms, str) else list(terms)
    pairs: set[tuple[str, str]] = set()
    for raw in items:
        term = raw.strip()
        if not term:
            continue
        key, sep, value = term.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _LABEL_KEY.fullmatch(key) or not 0 < len(value) <= MAX_LABEL_VALUE_CHARS:
            raise ValueError(
                f"label {term!r}: write key=value, the key a lowercase letter then up to 31 of "
                f"a-z, 0-9 and _, the value 1 to {MAX_LABEL_VALUE_CHARS} characters "
                "(e.g. ring=canary)"
            )
        pairs.add((key, value))
    if len(pairs) > MAX_SELECTOR_TERMS:
        raise ValueError(f"{len(pairs)} label terms; the limit is {MAX_SELECTOR_TERMS}")
    return tuple(sorted(pairs))


def selector_text(selector: Selector) -> str:
    """The selector as written: `hardware=jetson-orin,ring=canary`."""
    return ",".join(f"{key}={value}" for key, value in selector)


def matches(labels: Mapping[str, str], selector: Selector | Mapping[str, str]) -> bool:
    """Whether a device carries every `key=value` of the selector (an empty one: always)."""
    pairs = selector.items() if isinstance(selector, Mapping) else selector
    return all(labels.get(key) == value for key, value in pairs)


def label_terms(labels: Iterable[Mapping[str, str]]) -> list[str]:
    """Every `key=value` any of these devices carries, sorted: the filter's choices."""
    return sorted({f"{k}={v}" for device in labels for k, v in device.items()})


def select(
    keys: Sequence[Key], labels: Mapping[Key, Mapping[str, str]], selector: Selector
) -> list[Key]:
    """The devices (site, device) among `keys` whose effective labels match the selector."""
    return [k for k in keys if matches(labels.get(k, {}), selector)]
