"""bench room: the dashboard process left open overnight, in several tabs, on a large fleet.

`python -m bench.dashboard_soak [--tabs 3] [--minutes 10] [--devices 10000] [--refresh 5]`
seeds a state bucket with `devices` devices (as `bench.read_load` does), keeps the ingest's
heartbeat live with one ingest and a slow publisher, serves the dashboard as the product does
(`edgewatch dashboard` on a free loopback port, local sign-in) with EDGEWATCH_REFRESH_SECONDS
set to `refresh` to compress a night, and opens `tabs` Chromium tabs on the Fleet overview
(the last one at a phone's viewport, 390x844). Every `--visit-every` seconds one tab is
reloaded and a Device page is opened by a deep link in a new tab and closed.

Sampled every `--sample` seconds: the Streamlit process's RSS, open files and threads,
influxd's RSS, each tab's JS heap (`performance.memory`) and the errors on screen. Each tab's
websocket is read as Streamlit's own protobuf messages: a refresh is the fragment's auto-rerun
request answered by `script_finished`, and its latency runs from the first tick not yet answered
(Streamlit folds later ticks into the pending run) to that answer, as seen by this process (so
it includes Playwright's event dispatch, up to a quarter of a second).

Writes bench/results/dashboard_soak.json and prints a summary. Touches: its own Mosquitto,
influxd, ingest, publisher, dashboard and Chromium processes, a temp dir, loopback ports.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, ViewportSize, WebSocket, sync_playwright
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from bench.harness import BenchEnv, bench_env, stderr_progress, write_result
from bench.queries import STATE_LINES_PER_DEVICE, Seeder, fleet_lines, fleet_state_lines
from bench.runner import PublisherProcess, warm_up
from bench.scenarios import ingest_processes
from bench.workload import device_name
from edgewatch.settings import load_settings
from stack.influxd import ensure_influxd
from stack.processes import free_port, served_dashboard

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results" / "dashboard_soak.json"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--enable-precise-memory-info",
]
OPERATOR = ("soak-operator", "soak-operator-password")
DESKTOP: ViewportSize = {"width": 1440, "height": 1000}
PHONE: ViewportSize = {"width": 390, "height": 844}
START_TIMEOUT_S = 90.0
PAGE_TIMEOUT_MS = 120_000
PUBLISH_RATE = 20.0
PUBLISH_DEVICES = 200
MB = 1024 * 1024
# Samples in the first minutes show the caches and the tabs filling, not a trend.
WARM_UP_SHARE = 0.2
ERROR_SELECTORS = {
    "exception": '[data-testid="stException"]',
    "st.error": '[data-testid="stAlertContentError"]',
}


# ----------------------------------------------------------------------- pure arithmetic


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, in value per hour."""
    if len(points) < 3:
        return None
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return None
    cov = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    return cov / var * 3600.0


def series_summary(points: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """Start, peak, end, and the slope over the whole run and after the warm-up share."""
    if not points:
        return {"samples": 0}
    values = [v for _, v in points]
    settled = [p for p in points if p[0] >= points[-1][0] * WARM_UP_SHARE]
    return {
        "samples": len(points),
        "start": round(values[0], 1),
        "peak": round(max(values), 1),
        "end": round(values[-1], 1),
        "slope_per_hour": _rounded(slope_per_hour(points)),
        "slope_per_hour_after_warm_up": _rounded(slope_per_hour(settled)),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _status_value(pid: int, key: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def rss_mb(pid: int | None) -> float | None:
    kib = None if pid is None else _status_value(pid, "VmRSS")
    return None if kib is None else kib / 1024


def open_files(pid: int) -> int | None:
    try:
        return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return None


# ------------------------------------------------------------------------ the dashboard


@contextmanager
def serve_dashboard(env: BenchEnv, refresh_s: float, progress: Any) -> Iterator[tuple[str, int]]:
    """`edgewatch dashboard` on a free port against `env`; (url, pid), stopped on exit."""
    state_dir = env.root / "dashboard-state"
    state_dir.mkdir(exist_ok=True)
    edgewatch = str(Path(sys.executable).parent / "edgewatch")
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("EDGEWATCH_", "INFLUXDB_"))},
        "INFLUXDB_V2_URL": env.url,
        "INFLUXDB_V2_ORG": env.org,
        "INFLUXDB_V2_TOKEN": env.token,
        "EDGEWATCH_DASHBOARD_TOKEN": env.token,
        "INFLUXDB_V2_BUCKET": env.buckets.raw,
        "EDGEWATCH_BUCKET_1M": env.buckets.m1,
        "EDGEWATCH_BUCKET_1H": env.buckets.h1,
        "EDGEWATCH_BUCKET_OPS": env.buckets.ops,
        "EDGEWATCH_BUCKET_STATE": env.buckets.state,
        "EDGEWATCH_STATE_DIR": str(state_dir),
        "EDGEWATCH_REFRESH_SECONDS": f"{refresh_s:g}",
        "EDGEWATCH_DASHBOARD_PORT": str(free_port()),
        # This checkout's dashboard, even when the environment's package is installed from
        # another one (`edgewatch dashboard` serves the app beside the `dashboard` it imports).
        "PYTHONPATH": os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    subprocess.run(
        [edgewatch, "users", "add", OPERATOR[0], "--role", "operator", "--password-stdin"],
        input=OPERATOR[1] + "\n",
        env=environment,
        check=True,
        capture_output=True,
        text=True,
    )
    with served_dashboard(
        [edgewatch, "dashboard"],
        environment=environment,
        port=int(environment["EDGEWATCH_DASHBOARD_PORT"]),
        log_path=env.root / "dashboard.log",
        start_timeout_seconds=START_TIMEOUT_S,
    ) as (url, pid):
        progress(f"dashboard up at {url} (pid {pid}, refresh {refresh_s:g} s)")
        yield url, pid


# ------------------------------------------------------------------------------ the tabs


@dataclass
class TabWatch:
    """One tab: its refreshes (from its websocket), errors seen, JS heap samples."""

    name: str
    page: Page
    refreshes: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: set[str] = field(default_factory=set)
    console_errors: list[str] = field(default_factory=list)
    screen_errors: dict[str, int] = field(default_factory=dict)
    screen_error_texts: set[str] = field(default_factory=set)
    heap_mb: list[tuple[float, float]] = field(default_factory=list)
    _asked_at: float | None = None
    _fragment: bool = False

    def attach(self) -> None:
        self.page.on("websocket", self._on_websocket)
        self.page.on("pageerror", lambda exc: self.page_errors.append(str(exc)[:300]))
        # A console "Failed to load resource" names no URL; this does (e.g. map tiles offline).
        self.page.on(
            "requestfailed", lambda req: self.failed_requests.add(req.url.split("?", 1)[0][:200])
        )
        self.page.on(
            "console",
            lambda msg: self.console_errors.append(msg.text[:300]) if msg.type == "error" else None,
        )

    def _on_websocket(self, ws: WebSocket) -> None:
        if not ws.url.endswith("/_stcore/stream"):
            return
        ws.on("framesent", self._sent)
        ws.on("framereceived", self._received)

    def _sent(self, payload: str | bytes) -> None:
        if isinstance(payload, str):
            return
        msg = BackMsg.FromString(payload)
        if msg.WhichOneof("type") == "rerun_script":
            # Ticks that arrive while a run is pending are folded into it by Streamlit: the
            # wait counts from the first one.
            if self._asked_at is None:
                self._asked_at = time.monotonic()
            self._fragment = bool(msg.rerun_script.fragment_id)

    def _received(self, payload: str | bytes) -> None:
        if isinstance(payload, str) or self._asked_at is None:
            return
        msg = ForwardMsg.FromString(payload)
        if msg.WhichOneof("type") != "script_finished":
            return
        if self._fragment:
            self.refreshes += 1
            self.latencies_ms.append((time.monotonic() - self._asked_at) * 1000.0)
        self._asked_at = None

    def sample(self, t: float) -> None:
        heap = self.page.evaluate(
            "() => performance.memory ? performance.memory.usedJSHeapSize : null"
        )
        if heap is not None:
            self.heap_mb.append((t, heap / MB))
        self.screen_errors_now()

    def screen_errors_now(self) -> int:
        """Errors on screen now; each distinct text is counted once."""
        found = 0
        for kind, selector in ERROR_SELECTORS.items():
            for text in self.page.locator(selector).all_inner_texts():
                found += 1
                key = f"{kind}: {text[:300]}"
                if key not in self.screen_error_texts:
                    self.screen_error_texts.add(key)
                    self.screen_errors[kind] = self.screen_errors.get(kind, 0) + 1
        return found

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "refreshes": self.refreshes,
            "refresh_ms_median": round(lat[len(lat) // 2]) if lat else None,
            "refresh_ms_p95": round(lat[int(len(lat) * 0.95)]) if lat else None,
            "refresh_ms_max": round(lat[-1]) if lat else None,
            "js_heap_mb": series_summary(self.heap_mb),
            "page_errors": len(self.page_errors),
            "page_error_examples": self.page_errors[:5],
            "console_errors": len(self.console_errors),
            "console_error_examples": sorted(set(self.console_errors))[:5],
            "failed_requests": sorted(self.failed_requests)[:10],
            "screen_errors": self.screen_errors,
            "screen_error_examples": sorted(self.screen_error_texts)[:5],
        }


def wait_for_page(page: Page, title: str) -> None:
    page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=PAGE_TIMEOUT_MS)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
        timeout=PAGE_TIMEOUT_MS,
    )


def open_signed_in(page: Page, url: str, title: str) -> None:
    """Open `url`, signing in through the form if this browser context has no cookie yet."""
    page.goto(url)
    heading = page.get_by_role("heading", name=title, exact=True).first
    login = page.get_by_role("button", name="Sign in")
    heading.or_(login).first.wait_for(timeout=PAGE_TIMEOUT_MS)
    if login.is_visible():
        page.get_by_label("User name").fill(OPERATOR[0])
        page.get_by_label("Password", exact=True).fill(OPERATOR[1])
        login.click()
    wait_for_page(page, title)


@dataclass
class Visits:
    """The operator's other moves: reloads and deep links, and what each showed."""

    reloads: int = 0
    reload_ms: list[float] = field(default_factory=list)
    deep_links: int = 0
    deep_link_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    errors_on_screen: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "reloads": self.reloads,
            "reload_ms_max": round(max(self.reload_ms)) if self.reload_ms else None,
            "deep_links": self.deep_links,
            "deep_link_ms_max": round(max(self.deep_link_ms)) if self.deep_link_ms else None,
            "failures": self.failures[:10],
            "errors_on_screen": self.errors_on_screen[:10],
        }


def reload_tab(tab: TabWatch, visits: Visits) -> None:
    t0 = time.monotonic()
    try:
        tab.page.reload()
        wait_for_page(tab.page, "Fleet overview")
        visits.reload_ms.append((time.monotonic() - t0) * 1000.0)
        visits.reloads += 1
        if tab.screen_errors_now():
            visits.errors_on_screen.append(f"after reload of {tab.name}")
    except Exception as exc:  # a timeout is a finding, not the end of the run
        visits.failures.append(f"reload {tab.name}: {str(exc)[:200]}")


def open_deep_link(browser_page: Page, url: str, visits: Visits) -> None:
    """A Device page by its link in a new tab of the same (signed-in) context, then closed."""
    page = browser_page.context.new_page()
    watch = TabWatch(name="deep-link", page=page)
    watch.attach()
    t0 = time.monotonic()
    try:
        page.goto(url)
        wait_for_page(page, "Device")
        page.wait_for_timeout(1500)  # charts draw after the run
        visits.deep_link_ms.append((time.monotonic() - t0) * 1000.0)
        visits.deep_links += 1
        if watch.screen_errors_now() or watch.page_errors:
            visits.errors_on_screen.append(
                f"deep link {url}: {sorted(watch.screen_error_texts)[:2]} {watch.page_errors[:2]}"
            )
    except Exception as exc:
        visits.failures.append(f"deep link {url}: {str(exc)[:200]}")
    finally:
        page.close()


# --------------------------------------------------------------------------------- run


def open_tabs(browser: Browser, url: str, count: int) -> list[TabWatch]:
    """`count` tabs on the Fleet overview: count-1 desktop tabs sharing one context (one
    cookie, as tabs do) and one phone."""
    desktop = browser.new_context(viewport=DESKTOP)
    phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    tabs: list[TabWatch] = []
    for index in range(count):
        is_phone = index == count - 1 and count > 1
        page = (phone if is_phone else desktop).new_page()
        tab = TabWatch(name="phone" if is_phone else f"desktop-{index + 1}", page=page)
        tab.attach()
        open_signed_in(page, url + "/", "Fleet overview")
        tabs.append(tab)
    return tabs


def soak(args: argparse.Namespace) -> dict[str, Any]:
    progress = stderr_progress
    settings = load_settings()
    influxd = ensure_influxd(settings.cache_dir, settings.influxdb_version, progress=progress)
    seconds = args.minutes * 60.0
    with bench_env(influxd_binary=influxd, name="dashboard-soak", progress=progress) as env:
        now_s = int(datetime.now(tz=UTC).timestamp())
        seeder = Seeder(env, progress)
        seeder.seed(
            env.buckets.state,
            fleet_state_lines(args.devices, now_s),
            label=f"state ({args.devices:,} devices)",
            total=args.devices * STATE_LINES_PER_DEVICE,
        )
        seeder.seed(env.buckets.raw, fleet_lines(10, now_s), label="heartbeat", total=52)
        # A live ingest keeps the heartbeat current (else the overview says, rightly, that
        # the ingest stopped) and moves a few devices' state under the open tabs.
        procs = ingest_processes(env, bucket=env.buckets.raw, root="edgewatch", replicas=1)
        for proc in procs:
            proc.start()
        publisher: PublisherProcess | None = None
        try:
            warm_up(env, bucket=env.buckets.raw, root="edgewatch", progress=progress)
            publisher = PublisherProcess(
                env=env,
                args=[
                    "--rate", str(PUBLISH_RATE), "--seconds", str(seconds + 600),
                    "--devices", str(PUBLISH_DEVICES),
                ],
                client_id="edgewatch-bench-dashboard-soak",
            )  # fmt: skip
            with (
                serve_dashboard(env, args.refresh, progress) as (url, dashboard_pid),
                sync_playwright() as playwright,
            ):
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    result = _watch(
                        args, env, browser, url=url, dashboard_pid=dashboard_pid, seconds=seconds
                    )
                finally:
                    browser.close()
        finally:
            if publisher is not None:
                publisher.kill()
            for proc in procs:
                proc.stop()
    return result


def _watch(
    args: argparse.Namespace,
    env: BenchEnv,
    browser: Browser,
    *,
    url: str,
    dashboard_pid: int,
    seconds: float,
) -> dict[str, Any]:
    progress = stderr_progress
    t_start = time.monotonic()
    tabs = open_tabs(browser, url, args.tabs)
    progress(f"{len(tabs)} tabs open on the Fleet overview in {time.monotonic() - t_start:.0f} s")
    visits = Visits()
    streamlit_rss: list[tuple[float, float]] = []
    influxd_rss: list[tuple[float, float]] = []
    fds: list[tuple[float, float]] = []
    threads: list[tuple[float, float]] = []
    t0 = time.monotonic()
    next_sample = next_visit = t0
    visit = 0
    pump = tabs[0].page
    while (now := time.monotonic()) - t0 < seconds:
        t = now - t0
        if now >= next_sample:
            next_sample += args.sample
            for series, value in (
                (streamlit_rss, rss_mb(dashboard_pid)),
                (influxd_rss, rss_mb(env.influxd.pid)),
                (fds, open_files(dashboard_pid)),
                (threads, _status_value(dashboard_pid, "Threads")),
            ):
                if value is not None:
                    series.append((t, float(value)))
            for tab in tabs:
                try:
                    tab.sample(t)
                except Exception as exc:
                    visits.failures.append(f"sample {tab.name}: {str(exc)[:200]}")
        if now >= next_visit and t > 0:
            tab = tabs[visit % len(tabs)]
            reload_tab(tab, visits)
            d = (visit * 7919) % args.devices
            site, device = device_name(d)
            open_deep_link(tabs[0].page, f"{url}/device?site={site}&device={device}", visits)
            visit += 1
            progress(
                f"t={t:.0f}s streamlit {streamlit_rss[-1][1]:.0f} MB, influxd "
                f"{influxd_rss[-1][1]:.0f} MB, refreshes {[x.refreshes for x in tabs]}"
            )
        if now >= next_visit:
            next_visit += args.visit_every
        # Playwright's sync API dispatches websocket events only while it runs: wait in it.
        pump.wait_for_timeout(250)
    return {
        "tabs": args.tabs,
        "minutes": args.minutes,
        "devices": args.devices,
        "refresh_seconds": args.refresh,
        "sample_seconds": args.sample,
        "machine": f"{os.cpu_count()} cores, shared with other work (loaded); "
        f"load average at the end {os.getloadavg()[0]:.1f}",
        "streamlit_rss_mb": series_summary(streamlit_rss),
        "streamlit_open_files": series_summary(fds),
        "streamlit_threads": series_summary(threads),
        "influxd_rss_mb": series_summary(influxd_rss),
        "tabs_seen": {tab.name: tab.summary() for tab in tabs},
        "visits": visits.summary(),
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    def line(name: str, s: dict[str, Any]) -> str:
        return (
            f"{name:<18} start {s.get('start')} peak {s.get('peak')} end {s.get('end')}"
            f"  slope/h {s.get('slope_per_hour')}"
            f" (after warm-up {s.get('slope_per_hour_after_warm_up')})"
        )

    out = [
        f"{result['tabs']} tabs, {result['minutes']} min, {result['devices']:,} devices, "
        f"refresh {result['refresh_seconds']:g} s; {result['machine']}",
        line("streamlit RSS MB", result["streamlit_rss_mb"]),
        line("influxd RSS MB", result["influxd_rss_mb"]),
        line("streamlit fds", result["streamlit_open_files"]),
    ]
    for name, tab in result["tabs_seen"].items():
        out.append(
            f"{name:<10} refreshes {tab['refreshes']} (median {tab['refresh_ms_median']} ms, "
            f"p95 {tab['refresh_ms_p95']} ms), JS heap {tab['js_heap_mb'].get('start')} -> "
            f"{tab['js_heap_mb'].get('end')} MB, errors: page {tab['page_errors']}, console "
            f"{tab['console_errors']}, on screen {tab['screen_errors']}"
        )
    v = result["visits"]
    out.append(
        f"reloads {v['reloads']}, deep links {v['deep_links']}, failures {len(v['failures'])}, "
        f"errors on screen after a visit {len(v['errors_on_screen'])}"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard_soak", description=__doc__)
    parser.add_argument("--tabs", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--refresh", type=float, default=5.0, help="EDGEWATCH_REFRESH_SECONDS")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument(
        "--visit-every", type=float, default=60.0, help="seconds between reload + deep link"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = soak(args)
    write_result(args.output, result)
    for text in summary_lines(result):
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
