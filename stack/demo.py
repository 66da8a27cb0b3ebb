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
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from dashboard.auth import UserStore
from edgewatch.settings import Settings
from stack.cli import StackPaths, dotenv_lines, load_service_passwords, stack_up
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


def service_env(settings: Settings, paths: StackPaths, service: str) -> dict[str, str]:
    """The environment of one child: ours, minus every secret, plus its own (over TLS)."""
    from stack.bootstrap import load_credentials  # noqa: PLC0415

    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MQTT_", "INFLUXDB_V2_", "EDGEWATCH_"))
    }
    lines = dotenv_lines(
        settings,
        load_credentials(paths.credentials),
        service=service,
        mqtt_passwords=load_service_passwords(paths),
        ca_path=paths.pki_dir / "ca.crt",
    )
    for line in lines:
        key, _, value = line.partition("=")
        base[key] = value.strip("'")
    base["EDGEWATCH_STATE_DIR"] = str(settings.state_dir)
    base["EDGEWATCH_CACHE_DIR"] = str(settings.cache_dir)
    return base


def ensure_demo_logins(settings: Settings, paths: StackPaths) -> dict[str, str]:
    """An operator and a viewer for the dashboard, made once; their passwords kept 0600."""
    logins_path = paths.state_dir / "demo-logins.json"
    store = UserStore(settings.users_path)
    try:
        logins: dict[str, str] = json.loads(logins_path.read_text())
    except FileNotFoundError:
        logins = {}
    for name, role in (("operator", "operator"), ("viewer", "viewer")):
        if name not in logins or store.role_of(name) is None:
            logins[name] = secrets.token_urlsafe(12)
            store.add(name, logins[name], role)
    fd = os.open(logins_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(logins, handle, indent=2)
    return logins


def run_demo(
    settings: Settings,
    *,
    sites: int,
    devices: int,
    seed: int,
    duration_s: float | None,
) -> int:
    paths = StackPaths(settings.state_dir)
    check_port_free(settings.dashboard_port, env_var="EDGEWATCH_DASHBOARD_PORT")
    stack_up(settings)
    logins = ensure_demo_logins(settings, paths)
    cli = [sys.executable, "-m", "edgewatch.cli"]
    children = [
        Child(
            "ingest",
            [*cli, "ingest"],
            service_env(settings, paths, "ingest"),
            paths.log_file("ingest"),
        ),
        Child(
            "rollup",
            [*cli, "rollup"],
            service_env(settings, paths, "rollup"),
            paths.log_file("rollup"),
        ),
        Child(
            "simulator",
            [
                *cli,
                "simulate",
                "--sites",
                str(sites),
                "--devices",
                str(devices),
                "--seed",
                str(seed),
            ],
            service_env(settings, paths, "simulator"),
            paths.log_file("simulator"),
        ),
        Child(
            "dashboard",
            [*cli, "dashboard", "--port", str(settings.dashboard_port)],
            service_env(settings, paths, "dashboard"),
            paths.log_file("dashboard"),
        ),
    ]
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
        deadline = time.monotonic() + DASHBOARD_START_TIMEOUT_SECONDS
        while not tcp_accepts("127.0.0.1", settings.dashboard_port):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the dashboard did not start; see {paths.log_file('dashboard')}"
                )
            time.sleep(0.5)
        print(f"\nedgewatch is running: open http://127.0.0.1:{settings.dashboard_port}")
        for name, password in logins.items():
            print(f"  sign in as {name} / {password}")
        print(
            "Ctrl-C stops the ingest, rollup service, simulator and dashboard; "
            "`edgewatch stack down` stops the stack.\n",
            flush=True,
        )
        started = time.monotonic()
        while not stopping:
            for child in children:
                code = child.process.poll() if child.process else None
                if code is not None:
                    raise RuntimeError(
                        f"{child.name} exited with code {code}; its log "
                        f"({child.log_path}) ends with:\n{child.log_tail()}"
                    )
            if duration_s is not None and time.monotonic() - started >= duration_s:
                break
            time.sleep(POLL_INTERVAL_SECONDS)
    except KeyboardInterrupt:
        pass
    finally:
        for child in reversed(children):
            child.stop()
        signal.signal(signal.SIGTERM, previous)
        print("stopped the ingest, rollup service, simulator and dashboard", file=sys.stderr)
    return 0
