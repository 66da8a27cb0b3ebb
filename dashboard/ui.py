"""dashboard room: the few Streamlit helpers every page shares (context, errors, badges).

Pages stay thin by calling these; nothing here talks to InfluxDB except through `data`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

import pandas as pd
import streamlit as st
from pydantic import ValidationError

from dashboard import data, model_data
from dashboard.auth import User
from dashboard.charts import HEALTH_COLORS, HEALTH_ORDER, SEVERITY_COLORS
from dashboard.identity import current_user, may_have_user, session_still_valid, sign_out
from edgewatch.labels import (
    Selector,
    fleet_labels,
    label_terms,
    matches,
    parse_selector,
    selector_text,
)
from edgewatch.settings import Settings, load_settings

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

PAGE_FLEET = "app_pages/fleet.py"
PAGE_ALERTS = "app_pages/alerts.py"
PAGE_TRENDS = "app_pages/trends.py"
PAGE_DEVICE = "app_pages/device.py"
PAGE_INGEST = "app_pages/ingest.py"
PAGE_MODELS = "app_pages/models.py"
PAGE_RULES = "app_pages/rules.py"


def signed_in_hint() -> bool:
    """Whether to show the page navigation on this run (see `identity.may_have_user`)."""
    try:
        return may_have_user(load_settings())
    except ValidationError:
        return False


def context() -> tuple[Settings, data.Connection, User]:
    """Settings, the InfluxDB connection and the acting user; stops the page on bad settings."""
    try:
        settings = load_settings()
    except ValidationError as exc:
        st.error(
            f"The dashboard's settings are invalid: {exc.errors()[0].get('msg')}. "
            "Check the EDGEWATCH_* and INFLUXDB_V2_* environment variables."
        )
        st.stop()
    connection = data.Connection.from_settings(settings)
    if not connection.token:
        st.error(
            "No InfluxDB token is configured: set EDGEWATCH_DASHBOARD_TOKEN or "
            'INFLUXDB_V2_TOKEN, e.g. `eval "$(edgewatch stack env --export)"`.'
        )
        st.stop()
    return settings, connection, current_user(settings)


def end_with_session(settings: Settings) -> None:
    """The first line of a live fragment. Its refreshes run the fragment alone, never the
    sign-in check at the top of the page: a session that ended since the page opened (expired,
    signed out everywhere, user removed) reruns the whole page, which then asks to sign in."""
    if not session_still_valid(settings):
        st.rerun()


def load(loader: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
    """Run a data loader; on a store failure show what to do and return None."""
    try:
        return loader(*args, **kwargs)
    except data.StoreUnavailableError as exc:
        st.error(str(exc), icon=":material/cloud_off:")
        return None
    except ValueError as exc:
        # Input the allow-list refused: say which, never a traceback.
        st.warning(f"That selection cannot be shown: {exc}")
        return None


def load_or_stop(loader: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`load`, but the page ends (after showing the message) when there is nothing to show."""
    result = load(loader, *args, **kwargs)
    if result is None:
        st.stop()
    return result


def ingest_banner(view: data.FleetView) -> None:
    """Say plainly when the ingest stopped: the states shown are then not current."""
    if not view.health and view.heartbeat.last_ns is None:
        return
    if view.ingest_silent:
        reason = view.health[0].reason
        st.error(
            f"**Fleet state UNKNOWN: {reason}.** Nothing here is current: device data stops "
            "at the ingest's last report. Check the ingest (`edgewatch ingest`) and its logs.",
            icon=":material/report:",
        )


def state_color(value: Any) -> str:
    color = HEALTH_COLORS.get(str(value))
    return f"background-color: {color}; color: white; font-weight: 600" if color else ""


def severity_color(value: Any) -> str:
    color = SEVERITY_COLORS.get(str(value))
    if not color:
        return ""
    text = "black" if value in ("minor", "warning") else "white"
    return f"background-color: {color}; color: {text}; font-weight: 600"


def styled(frame: pd.DataFrame, *, state: str | None = None, severity: str | None = None) -> Any:
    """A Styler that paints the health-state and severity columns in their colours."""
    styler = frame.style
    if state and state in frame:
        styler = styler.map(state_color, subset=[state])
    if severity and severity in frame:
        styler = styler.map(severity_color, subset=[severity])
    return styler


# A state the health model does not colour (MAINTENANCE) gets a neutral badge.
NEUTRAL_BADGE_COLOR = "#5b7fa6"


def state_badges(frame: pd.DataFrame, column: str = "state") -> tuple[pd.DataFrame, Any]:
    """The frame with `column` as one coloured badge per row, and the column's config.

    For tables of the whole fleet: a pandas Styler computes and sends CSS for every cell,
    about 2 s and 2 MB per 10,000 rows on each refresh of each tab; the grid colours the
    badges itself from one option list.
    """
    present = {str(v) for v in frame[column].unique()} if column in frame else set()
    options = [*HEALTH_ORDER, *sorted(present - set(HEALTH_ORDER))]
    colors = [HEALTH_COLORS.get(state, NEUTRAL_BADGE_COLOR) for state in options]
    badges = frame.copy()
    if present:
        badges[column] = pd.Series([[str(v)] for v in frame[column]], index=frame.index)
    config = st.column_config.MultiselectColumn(column, options=options, color=colors)
    return badges, config


TIME_FORMAT = "YYYY-MM-DD HH:mm:ss"
TIME_COLUMNS = ("time", "since", "last_seen", "opened", "last", "snoozed_until")


def column_config(frame: pd.DataFrame) -> dict[str, Any]:
    """Readable times (no microseconds) for the time columns a frame has."""
    return {
        name: st.column_config.DatetimeColumn(name.replace("_", " "), format=TIME_FORMAT)
        for name in TIME_COLUMNS
        if name in frame
    }


def short_time(ns: int) -> str:
    return pd.Timestamp(ns, unit="ns", tz="UTC").strftime("%m-%d %H:%M UTC")


def ago(ts: pd.Timestamp | None, now: pd.Timestamp) -> str:
    """'12 s ago', '5 min ago', '3.2 h ago', or 'never'."""
    if ts is None or pd.isna(ts):
        return "never"
    seconds = max(0.0, (now - ts).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} d ago"


def sidebar_footer(settings: Settings, user: User) -> None:
    with st.sidebar:
        st.caption(f"Signed in as **{user.name}** ({user.role})")
        if settings.auth_mode != "none":
            st.button("Sign out", key="auth_sign_out", on_click=sign_out)
        st.caption(
            f"InfluxDB: {settings.influxdb_url} · refresh {settings.dashboard_refresh_seconds:g} s"
        )


# At a phone's width Streamlit already stacks columns; these rules win back the side padding,
# keep the metric tiles two to a row instead of one per screen line, and let wide tables
# scroll inside themselves rather than widen the page.
NARROW_LAYOUT_CSS = """
<style>
@media (max-width: 640px) {
  .block-container, [data-testid="stMainBlockContainer"] {
    padding-left: 0.75rem; padding-right: 0.75rem; padding-top: 2.5rem;
  }
  [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"] [data-testid="stMetric"]) {
    display: grid !important; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 0.5rem;
  }
  [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"] [data-testid="stMetric"])
    > [data-testid="stColumn"] { width: auto !important; min-width: 0 !important; }
  [data-testid="stMetricValue"] { font-size: 1.6rem; }
  [data-testid="stDataFrame"] { max-width: 100%; overflow-x: auto; }
  h1 { font-size: 1.8rem; }
}
</style>
"""


def narrow_layout() -> None:
    """The style rules for narrow screens (see NARROW_LAYOUT_CSS); once per run."""
    st.html(NARROW_LAYOUT_CSS)


# ------------------------------------------------------------------ device groups by label

LABELS_PARAM = "labels"
Key = tuple[str, str]


def device_labels(connection: data.Connection, view: data.FleetView) -> dict[Key, dict[str, str]]:
    """Every device's effective labels: its status labels with operators' label actions
    applied (`edgewatch.labels`). Without the ops bucket, the status labels alone."""
    overlays = load(model_data.load_label_overlays, connection) or {}
    status = {key: dict(info.labels) for key, info in view.info.items()}
    return fleet_labels(status, overlays)


def label_filter(
    labels: Mapping[Key, Mapping[str, str]], *, key: str, container: Any = None
) -> Selector:
    """The shared "Device labels" filter: a multiselect of `key=value` (all must hold), kept
    in the URL (`?labels=ring=canary,hardware=jetson-orin`) so a copied link keeps it.

    The selection is applied by the caller, outside the data cache (`matching_keys`).
    """
    try:
        from_url = parse_selector(st.query_params.get(LABELS_PARAM, ""))
    except ValueError as exc:
        st.warning(f"The link's label filter is ignored: {exc}")
        from_url = ()
    wanted_url = [f"{k}={v}" for k, v in from_url]
    if key not in st.session_state:
        st.session_state[key] = wanted_url
    # A term from the link that no device carries now stays choosable (it selects nothing).
    options = sorted({*label_terms(labels.values()), *st.session_state[key]})
    chosen = (container or st).multiselect(
        "Device labels",
        options,
        key=key,
        placeholder="All devices",
        help="Device groups: a device matches when it carries every chosen key=value "
        "(its status labels or an operator's, as set on the Models page).",
    )
    selector = parse_selector(chosen)
    text = selector_text(selector)
    if text:
        st.query_params[LABELS_PARAM] = text
    elif LABELS_PARAM in st.query_params:
        del st.query_params[LABELS_PARAM]
    return selector


def matching_keys(labels: Mapping[Key, Mapping[str, str]], selector: Selector) -> set[Key] | None:
    """The devices the selector keeps, or None when there is no filter (keep everything,
    including devices with no labels at all)."""
    if not selector:
        return None
    return {k for k, device in labels.items() if matches(device, selector)}


def keep_devices(frame: pd.DataFrame, keys: set[Key] | None) -> pd.DataFrame:
    """Rows of a frame with `site` and `device` columns whose device is in `keys`."""
    if keys is None or frame.empty:
        return frame
    mask = [(str(s), str(d)) in keys for s, d in zip(frame["site"], frame["device"], strict=True)]
    return frame[mask].reset_index(drop=True)
