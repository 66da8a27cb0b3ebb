"""The dashboard in a real browser: `edgewatch dashboard` as a process, Chromium via Playwright.

Opens every page against a seeded InfluxDB, finds no error on screen, acknowledges an alert by
clicks, and saves a screenshot of each page at 1440 and 390 px wide to test-artifacts/ (with
EDGEWATCH_UPDATE_SCREENSHOT=1 the fleet overview and the phone-width alert review also go to
docs/ for the README).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from dashboard.auth import UserStore
from dashboard.session_token import COOKIE_NAME
from stack.processes import free_port, served_dashboard
from stack.testing import InfluxFixture
from tests.integration.dashboard_seed import DashboardDB, make_dashboard_db, seed_fleet
from tests.integration.models_seed import ModelTruth, seed_models

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
OPERATOR = ("test-operator", "operator-password")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
START_TIMEOUT_S = 60.0
PHONE_WIDTH = 390
WIDTHS = (1440, PHONE_WIDTH)
PAGES = {
    "fleet": ("/", "Fleet overview"),
    "alerts": ("/alerts", "Alerts"),
    "trends": (
        "/trends?devices=dt-berlin/cam-1,dt-berlin/cam-2,dt-munich/cam-1"
        "&metric=cpu_temp_c&range=1h",
        "Trends",
    ),
    "device": ("/device?site=dt-munich&device=cam-2", "Device"),
    # Opened with nothing named: the device most in need, the trends that explain it.
    "device-default": ("/device", "Device"),
    "trends-default": ("/trends", "Trends"),
    "ingest": ("/ingest", "Ingest health"),
    "rules": ("/rules", "Rules"),
}


@pytest.fixture(scope="module")
def seeded_db(influxdb: InfluxFixture) -> DashboardDB:
    db = make_dashboard_db(influxdb.url, influxdb.org, influxdb.admin_token)
    seed_fleet(db)
    return db


@pytest.fixture(scope="module")
def dashboard_url(
    seeded_db: DashboardDB, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with serve_dashboard(seeded_db, tmp_path_factory, "dashboard.log") as url:
        yield url


@contextlib.contextmanager
def serve_dashboard(
    db: DashboardDB, tmp_path_factory: pytest.TempPathFactory, log_name: str
) -> Iterator[str]:
    """`edgewatch dashboard` on a free port against `db`, stopped (its group) on exit."""
    port = free_port()
    users = tmp_path_factory.mktemp("users") / "users.json"
    UserStore(users).add(OPERATOR[0], OPERATOR[1], "operator")
    env = {
        **os.environ,
        **db.env(EDGEWATCH_DASHBOARD_PORT=str(port), EDGEWATCH_USERS_FILE=str(users)),
    }
    env.pop("EDGEWATCH_AUTH", None)
    # This checkout's dashboard, even when the environment's package is installed from
    # another checkout (`edgewatch dashboard` serves the app beside the `dashboard` it imports).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    ARTIFACTS.mkdir(exist_ok=True)
    argv = [str(Path(sys.executable).parent / "edgewatch"), "dashboard"]
    with contextlib.ExitStack() as stack:
        try:
            url, _ = stack.enter_context(
                served_dashboard(
                    argv,
                    environment=env,
                    port=port,
                    log_path=ARTIFACTS / log_name,
                    cwd=REPO_ROOT,
                    start_timeout_seconds=START_TIMEOUT_S,
                )
            )
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 2000})
    yield context.new_page()
    context.close()


def open_signed_in(page: Page, url: str, title: str) -> None:
    """Open `url`; sign in through the form when the session has no user yet."""
    page.goto(url)
    heading = page.get_by_role("heading", name=title, exact=True).first
    login = page.get_by_role("button", name="Sign in")
    expect(heading.or_(login)).to_be_visible(timeout=30_000)
    if login.is_visible():
        page.get_by_label("User name").fill(OPERATOR[0])
        page.get_by_label("Password", exact=True).fill(OPERATOR[1])
        login.click()
    wait_for_page(page, title)


def wait_for_page(page: Page, title: str) -> None:
    expect(page.get_by_role("heading", name=title, exact=True).first).to_be_visible(timeout=30_000)
    # Streamlit shows a status widget while the script runs; wait for the run to finish.
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=30_000
    )
    page.wait_for_timeout(1500)  # charts draw after the script run


def assert_no_errors(page: Page, name: str) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, name
    errors = page.locator('[data-testid="stAlertContentError"]').all_inner_texts()
    assert errors == [], f"{name}: {errors}"


def test_every_page_renders_without_errors(page: Page, dashboard_url: str) -> None:
    for width in WIDTHS:
        # Streamlit scrolls inside its own container: a tall viewport is the full page.
        page.set_viewport_size({"width": width, "height": 2000 if width > 600 else 3200})
        for name, (path, title) in PAGES.items():
            open_signed_in(page, dashboard_url + path, title)
            assert_no_errors(page, f"{name} at {width} px")
            page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1440, "height": 2000})
    if os.environ.get("EDGEWATCH_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(ARTIFACTS / "fleet-1440.png", REPO_ROOT / "docs" / "screenshot-fleet.png")


def test_at_a_phones_width_the_overview_fits_and_review_buttons_are_reachable(
    browser: Browser, dashboard_url: str
) -> None:
    context = browser.new_context(viewport={"width": PHONE_WIDTH, "height": 844})
    try:
        phone = context.new_page()
        open_signed_in(phone, dashboard_url + "/", "Fleet overview")
        # Readable: the page itself does not scroll sideways (wide tables scroll inside).
        page_width = phone.evaluate("() => document.documentElement.scrollWidth")
        assert page_width <= PHONE_WIDTH, page_width
        devices = phone.locator('[data-testid="stMetric"]', has_text="Devices")
        expect(devices.locator('[data-testid="stMetricValue"]')).to_have_text("7")

        open_signed_in(phone, dashboard_url + "/alerts", "Alerts")
        assert phone.evaluate("() => document.documentElement.scrollWidth") <= PHONE_WIDTH
        for name in ("Acknowledge", "Resolve"):
            button = phone.get_by_role("button", name=name, exact=True)
            button.scroll_into_view_if_needed()
            box = button.bounding_box()
            assert box is not None and box["x"] >= 0, name
            assert box["x"] + box["width"] <= PHONE_WIDTH, (name, box)
            expect(button).to_be_in_viewport()
        phone.screenshot(path=str(ARTIFACTS / "alerts-review-390.png"))
        if os.environ.get("EDGEWATCH_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(
                ARTIFACTS / "alerts-review-390.png",
                REPO_ROOT / "docs" / "screenshot-alerts-phone.png",
            )
    finally:
        context.close()


def test_sign_in_is_required_and_wrong_passwords_are_refused(
    page: Page, dashboard_url: str
) -> None:
    page.context.clear_cookies()
    page.goto(dashboard_url + "/")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=30_000)
    assert page.locator('[data-testid="stMetric"]').count() == 0
    page.get_by_label("User name").fill(OPERATOR[0])
    page.get_by_label("Password", exact=True).fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Wrong user name or password.")).to_be_visible(timeout=30_000)


def test_fleet_shows_the_seeded_counts(page: Page, dashboard_url: str) -> None:
    open_signed_in(page, dashboard_url + "/", "Fleet overview")
    devices = page.locator('[data-testid="stMetric"]', has_text="Devices")
    expect(devices.locator('[data-testid="stMetricValue"]')).to_have_text("7")


def test_acknowledge_by_clicks_is_stored(
    page: Page, dashboard_url: str, seeded_db: DashboardDB
) -> None:
    open_signed_in(page, dashboard_url + "/alerts", "Alerts")
    note = page.get_by_label("Note")
    note.fill("checked on site")
    note.press("Enter")
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Acknowledge", exact=True).click()
    expect(page.get_by_text("Acknowledged 1 alert(s) as test-operator.")).to_be_visible(
        timeout=30_000
    )
    assert_no_errors(page, "alerts after acknowledge")
    page.screenshot(path=str(ARTIFACTS / "alerts-acknowledged.png"), full_page=True)
    stored = seeded_db.query(
        "from(bucket: _b) |> range(start: -1h)"
        ' |> filter(fn: (r) => r._measurement == "alert_action")'
        ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
        _b=seeded_db.bucket_ops,
    )
    assert [(r["action"], r["user"], r["note"]) for r in stored] == [
        ("ack", "test-operator", "checked on site")
    ]


def test_selecting_a_device_row_opens_its_detail_page(page: Page, dashboard_url: str) -> None:
    open_signed_in(page, dashboard_url + "/", "Fleet overview")
    # The device table is the last data grid on the page; its first column selects a row.
    grid = page.locator('[data-testid="stDataFrame"]').last
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    assert box is not None
    row_height = 35  # Streamlit's grid: a 35 px header, then 35 px rows
    page.mouse.click(box["x"] + 15, box["y"] + row_height + row_height / 2)
    expect(page.get_by_role("heading", name="Device", exact=True).first).to_be_visible(
        timeout=30_000
    )
    assert "site=" in page.url and "device=" in page.url
    assert_no_errors(page, "device after drill-down")


def _session_cookie(context: BrowserContext) -> dict[str, Any] | None:
    for cookie in context.cookies():
        if cookie["name"] == COOKIE_NAME:
            return dict(cookie)
    return None


def _wait_for_session_cookie(page: Page) -> dict[str, Any]:
    page.wait_for_function(f"() => document.cookie.includes('{COOKIE_NAME}=')", timeout=30_000)
    cookie = _session_cookie(page.context)
    assert cookie is not None
    return cookie


def test_sign_in_survives_reloads_tabs_and_deep_links_until_sign_out(
    browser: Browser, dashboard_url: str
) -> None:
    deep_link = dashboard_url + "/alerts"
    context = browser.new_context(viewport={"width": 1440, "height": 1200})
    try:
        first = context.new_page()
        open_signed_in(first, dashboard_url + "/", "Fleet overview")
        cookie = _wait_for_session_cookie(first)
        assert OPERATOR[1] not in cookie["value"]

        first.reload()
        wait_for_page(first, "Fleet overview")
        assert first.get_by_role("button", name="Sign in").count() == 0

        second = context.new_page()
        second.goto(deep_link)
        wait_for_page(second, "Alerts")
        assert second.get_by_role("button", name="Sign in").count() == 0
        second.close()
        # A tab left open on the live overview: its refreshes run the fragment alone.
        left_open = context.new_page()
        left_open.goto(dashboard_url + "/")
        wait_for_page(left_open, "Fleet overview")

        first.get_by_role("button", name="Sign out").click()
        expect(first.get_by_role("button", name="Sign in")).to_be_visible(timeout=30_000)
        # Its next refresh ends the session there too, instead of showing the fleet on.
        expect(left_open.get_by_role("button", name="Sign in")).to_be_visible(timeout=60_000)
        assert left_open.get_by_role("heading", name="Fleet overview", exact=True).count() == 0
        left_open.close()
        first.wait_for_timeout(1500)  # the cookie is overwritten by the run after sign-out
        assert_no_errors(first, "sign-in form after sign-out")
        assert _session_cookie(context) is None  # the browser no longer holds it
        # A cookie copied before the sign-out (another browser, a stolen copy) is dead too.
        other = browser.new_context()
        other.add_cookies([cookie])  # type: ignore[list-item]
        for page in (context.new_page(), other.new_page()):
            page.goto(deep_link)
            expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=30_000)
            assert page.get_by_role("heading", name="Alerts", exact=True).count() == 0
        other.close()

        # Sign in again, then alter the cookie's payload: refused, back to the sign-in.
        open_signed_in(first, deep_link, "Alerts")
        fresh = _wait_for_session_cookie(first)
        payload, _, signature = fresh["value"].partition(".")
        swapped = "A" if payload[5] != "A" else "B"
        tampered = {**fresh, "value": f"{payload[:5]}{swapped}{payload[6:]}.{signature}"}
        context.clear_cookies()
        context.add_cookies([tampered])  # type: ignore[list-item]
        page = context.new_page()
        page.goto(deep_link)
        expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("no longer valid")).to_be_visible(timeout=30_000)
    finally:
        context.close()


def _chart_traces(page: Page) -> list[dict[str, Any]]:
    """Name and point count of every trace of every Plotly chart on the page."""
    traces: list[dict[str, Any]] = page.evaluate(
        """() => [...document.querySelectorAll('.js-plotly-plot')].flatMap((gd) =>
            (gd.data || []).map((t) => ({name: t.name || '', points: (t.x || []).length})))"""
    )
    return traces


def test_device_and_trends_open_on_what_matters_without_a_click(
    page: Page, dashboard_url: str
) -> None:
    open_signed_in(page, dashboard_url + "/device", "Device")
    # Two devices have an open critical alert; the longest open is dt-hamburg/cam-2's.
    expect(page).to_have_url(re.compile(r"site=dt-hamburg&device=cam-2"), timeout=30_000)
    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(timeout=30_000)
    traces = _chart_traces(page)
    assert any(t["name"] == "dt-hamburg/cam-2" and t["points"] > 0 for t in traces), traces
    assert any(t["name"] == "alert raised" for t in traces), traces
    assert_no_errors(page, "device, opened with no parameters")

    open_signed_in(page, dashboard_url + "/trends", "Trends")
    expect(page).to_have_url(re.compile(r"metric=cpu_temp_c"), timeout=30_000)
    assert "devices=" in page.url and "range=24h" in page.url
    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(timeout=30_000)
    traces = _chart_traces(page)
    assert any(t["name"] == "dt-berlin/cam-1" and t["points"] > 0 for t in traces), traces
    assert_no_errors(page, "trends, opened with no parameters")


@pytest.fixture(scope="module")
def models_url(
    influxdb: InfluxFixture, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, ModelTruth]]:
    """A dashboard of its own on the simulator's model fleet (the seeded counts stay apart)."""
    db = make_dashboard_db(influxdb.url, influxdb.org, influxdb.admin_token)
    truth = seed_models(db)
    with serve_dashboard(db, tmp_path_factory, "dashboard-models.log") as url:
        yield url, truth


def test_models_page_screenshot_shows_the_tampered_camera(
    page: Page, models_url: tuple[str, ModelTruth]
) -> None:
    url, truth = models_url
    open_signed_in(page, url + "/models", "Models")
    # The flag is drawn after the page's slower queries: wait for it, then read them all.
    expect(page.locator('[data-testid="stAlertContentError"]').first).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Rollouts: which devices moved when")).to_be_visible(timeout=30_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    errors = page.locator('[data-testid="stAlertContentError"]').all_inner_texts()
    assert truth.plan.tampered is not None
    assert len(errors) == 1 and "/".join(truth.plan.tampered) in errors[0], errors
    page.screenshot(path=str(ARTIFACTS / "models-1440.png"), full_page=True)
