"""`edgewatch demo`: the whole system on localhost, for a first look and for demos.

Room: `stack`. Starts the local stack if needed, then the ingest, the rollup service, the fleet
simulator and the dashboard as child processes, each with only its own secrets (`stack env
--service`), over TLS to the broker. Touches: the state dir (logs, demo logins) and the
children it starts, which it stops on Ctrl-C or SIGTERM; the stack itself keeps running for
`stack down`.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from edgewatch.settings import Settings, env_name, settings_env, without_settings
from shared.private_file import write_private_file
from stack.bootstrap import load_credentials
from stack.local_stack import StackPaths, load_service_passwords, service_environment, stack_up
from stack.notify_sink import NotificationSink
from stack.processes import check_port_free, tcp_accepts

POLL_INTERVAL_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 15.0
DASHBOARD_START_TIMEOUT_SECONDS = 60.0


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def service_env(
    settings: Settings, paths: StackPaths, service: str, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of one child: ours, minus every setting, plus its own (over TLS)."""
    env = without_settings(os.environ if environ is None else environ)
    env.update(
        service_environment(
            settings,
            load_credentials(paths.credentials),
            service=service,
            mqtt_passwords=load_service_passwords(paths),
            ca_path=paths.ca_cert,
        )
    )
    env.update(settings_env(state_dir=settings.state_dir, cache_dir=settings.cache_dir))
    return env


DEMO_LOGINS = (("operator", "operator"), ("viewer", "viewer"))


def _users_cli(args: list[str], env: Mapping[str, str], stdin: str = "") -> str:
    """Run `edgewatch users ...`: the dashboard's own account code, in its own process."""
    result = subprocess.run(
        [sys.executable, "-m", "edgewatch.cli", "users", *args],
        input=stdin,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"`edgewatch users {args[0]}` failed: {result.stderr.strip()}")
    return result.stdout


def ensure_demo_logins(settings: Settings, paths: StackPaths) -> dict[str, str]:
    """An operator and a viewer for the dashboard, made once; their passwords kept 0600."""
    logins_path = paths.state_dir / "demo-logins.json"
    env = without_settings(os.environ)
    env[env_name("users_file")] = str(settings.users_path)
    try:
        logins: dict[str, str] = json.loads(logins_path.read_text())
    except FileNotFoundError:
        logins = {}
    existing = {line.split()[0] for line in _users_cli(["list"], env).splitlines() if line}
    for name, role in DEMO_LOGINS:
        if name not in logins or name not in existing:
            logins[name] = secrets.token_urlsafe(12)
            _users_cli(["add", name, "--role", role, "--password-stdin"], env, logins[name])
    write_private_file(logins_path, json.dumps(logins, indent=2))
    return logins


def demo_children(
    settings: Settings,
    paths: StackPaths,
    *,
    sites: int,
    devices: int,
    seed: int,
    notify_urls: str,
) -> list[Child]:
    """The ingest, the rollup service, the simulator, the dashboard and the alerter, each with
    only its own secrets.

    The alerter notifies `notify_urls` (the demo's local sink) as its default receiver.
    """
    cli = [sys.executable, "-m", "edgewatch.cli"]
    simulate = ["simulate", "--sites", str(sites), "--devices", str(devices), "--seed", str(seed)]
    commands = {
        "ingest": ["ingest"],
        "rollup": ["rollup"],
        "simulator": simulate,
        "dashboard": ["dashboard", "--port", str(settings.dashboard_port)],
        "alerter": ["alerter"],
    }
    children = []
    for name, args in commands.items():
        env = service_env(settings, paths, name)
        if name == "alerter":
            env[env_name("notify_urls")] = notify_urls
            if settings.rules_file is not None:
                env[env_name("rules_file")] = str(settings.rules_file)
        children.append(Child(name, [*cli, *args], env, paths.log_file(name)))
    return children


def _wait_for_dashboard(settings: Settings, paths: StackPaths) -> None:
    deadline = time.monotonic() + DASHBOARD_START_TIMEOUT_SECONDS
    while not tcp_accepts("127.0.0.1", settings.dashboard_port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the dashboard did not start; see {paths.log_file('dashboard')}")
        time.sleep(0.5)


def _check_children(children: list[Child]) -> None:
    """A child that exited ends the demo, with the end of its log."""
    for child in children:
        code = child.process.poll() if child.process else None
        if code is not None:
            raise RuntimeError(
                f"{child.name} exited with code {code}; its log "
                f"({child.log_path}) ends with:\n{child.log_tail()}"
            )


def run_demo(
    settings: Settings,
    *,
    sites: int,
    devices: int,
    seed: int,
    duration_s: float | None,
) -> int:
    paths = StackPaths(settings.state_dir)
    check_port_free(settings.dashboard_port, env_var=env_name("dashboard_port"))
    stack_up(settings)
    logins = ensure_demo_logins(settings, paths)
    sink = NotificationSink(paths.log_file("notifications"))
    sink.start()
    children = demo_children(
        settings, paths, sites=sites, devices=devices, seed=seed, notify_urls=sink.apprise_url
    )
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        for child in children:
            child.start()
            print(
                f"{child.name:<10} started (pid {child.process and child.process.pid}), "
                f"log {child.log_path}",
                file=sys.stderr,
                flush=True,
            )
        _wait_for_dashboard(settings, paths)
        print(f"\nedgewatch is running: open http://127.0.0.1:{settings.dashboard_port}")
        print(f"  notifications (what would page someone) go to {sink.log_path}")
        for name, password in logins.items():
            print(f"  sign in as {name} / {password}")
        print(
            "Ctrl-C stops the ingest, rollup service, simulator, dashboard and alerter; "
            "`edgewatch stack down` stops the stack.\n",
            flush=True,
        )
        started = time.monotonic()
        while not stopping:
            _check_children(children)
            if duration_s is not None and time.monotonic() - started >= duration_s:
                break
            time.sleep(POLL_INTERVAL_SECONDS)
    except KeyboardInterrupt:
        pass
    finally:
        for child in reversed(children):
            child.stop()
        sink.stop()
        signal.signal(signal.SIGTERM, previous)
        print(
            "stopped the ingest, rollup service, simulator, dashboard and alerter", file=sys.stderr
        )
    return 0
