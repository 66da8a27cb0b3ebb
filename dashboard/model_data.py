"""dashboard room, cache layer: the Models page's cached reads and the actions it stores.

The reads themselves are `dashboard.model_store`'s (re-exported here for the page); this
module caches them (`st.cache_data` via `dashboard.data.cached_data`, keyed on the connection
and the range) and stores operators' releases and labels, dropping the cache after each.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from dashboard.auth import User, require_operator
from dashboard.data import (
    Connection,
    cached_data,
    store_for,
)
from dashboard.model_store import (
    METRIC_WINDOWS,
    MIN_EFFECTIVE_SPAN,
    Key,
    ModelData,
    effective_range,
    read_label_overlays,
    read_models,
    span_days,
)
from dashboard.ranges import TimeRange
from edgewatch.model_fleet import validate_label, validate_release
from edgewatch.schema import label_action_line, release_action_line

logger = logging.getLogger(__name__)

# What the page reads as `model_data.X`.
__all__ = [
    "METRIC_WINDOWS",
    "MIN_EFFECTIVE_SPAN",
    "ModelData",
    "effective_range",
    "load_label_overlays",
    "load_models",
    "read_models",
    "register_release",
    "set_label",
    "span_days",
]


@cached_data
def load_models(connection: Connection, time_range: TimeRange) -> ModelData:
    return read_models(store_for(connection), time_range, datetime.now(tz=UTC))


@cached_data
def load_label_overlays(connection: Connection) -> dict[Key, dict[str, str | None]]:
    """For every page's label filter: what operators set on top of the status labels."""
    return read_label_overlays(store_for(connection), datetime.now(tz=UTC))


def register_release(
    connection: Connection, *, user: User, model: str, version: str, sha256: str, note: str = ""
) -> None:
    """Store an operator's release (`release_action`, ops bucket), who and when."""
    require_operator(user)
    digest = validate_release(model, version, sha256, user.name)
    record = release_action_line(
        model=model, version=version, sha256=digest, user=user.name, note=note,
        ts_ns=time.time_ns(),
    )  # fmt: skip
    store_for(connection).write_ops(record, f"release {model} {version}")
    logger.info("release %s %s registered by %s", model, version, user.name)
    load_models.clear()


def set_label(
    connection: Connection,
    *,
    user: User,
    site: str,
    device: str,
    key: str,
    value: str,
    action: str = "set",
) -> None:
    """Store an operator's device label (`label_action`, ops bucket), who and when."""
    require_operator(user)
    validate_label(key, value, action, user.name)
    record = label_action_line(
        site=site, device=device, key=key, value=value, action=action, user=user.name,
        ts_ns=time.time_ns(),
    )  # fmt: skip
    store_for(connection).write_ops(record, f"label {key} on {site}/{device}")
    logger.info("label %s on %s/%s: %s by %s", key, site, device, action, user.name)
    load_models.clear()
    load_label_overlays.clear()
