"""stack room: start and stop real Mosquitto and influxd processes on loopback.

Each process keeps its data, config and log in the directory it is given. The test fixtures
and `edgewatch stack up` both use these classes. Touches: child processes, its data dir,
loopback TCP ports.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self, TypedDict, Unpack

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
READY_POLL_SECONDS = 0.1
LOG_TAIL_LINES = 20

# Processes started without `detach` die with the interpreter even if a test forgets them.
_ATTACHED: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on `host` right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """Whether something already listens on (or holds) `host:port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Without SO_REUSEADDR a port in TIME_WAIT reads as taken, although servers that set
        # it (both of ours do) can bind it; test the way they bind.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def port_taken_message(port: int, host: str, env_var: str) -> str:
    return f"port {port} on {host} is in use: set {env_var}=... or stop what holds it"


def check_port_free(port: int, *, host: str = LOOPBACK, env_var: str) -> None:
    """Raise a RuntimeError naming the setting to change when `host:port` is taken."""
    if port_in_use(port, host):
        raise RuntimeError(port_taken_message(port, host, env_var))


def tcp_accepts(host: str, port: int, timeout_seconds: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_seconds):
            return True
    except OSError:
        return False


def influxd_healthy(url: str, timeout_seconds: float = 2.0) -> bool:
    """Whether GET {url}/health answers with status "pass"."""
    try:
        with urllib.request.urlopen(  # noqa: S310 - our own loopback URL
            f"{url.rstrip('/')}/health", timeout=timeout_seconds
        ) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return isinstance(body, dict) and body.get("status") == "pass"


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a live process (zombies count as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may itself hold spaces.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pid_cmdline(pid: int) -> list[str]:
    """The argv of `pid`, or [] when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def terminate_pid(pid: int, timeout_seconds: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM, then SIGKILL if `pid` is still alive after `timeout_seconds`."""
    for sig, wait in ((signal.SIGTERM, timeout_seconds), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)
    if pid_alive(pid):
        raise RuntimeError(f"process {pid} survived SIGKILL")


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


class ProcessOptions(TypedDict, total=False):
    """What every managed server takes besides its port, data dir and binary (see
    `ManagedProcess.__init__` for the defaults); subclasses pass them through unchanged."""

    host: str
    log_path: Path | None
    start_timeout_seconds: float
    stop_timeout_seconds: float


class ManagedProcess(ABC):
    """A server process we own: started, health-checked, stopped, killed on purpose."""

    name: str
    env_var: str  # the setting a user changes when our port is taken

    def __init__(
        self,
        *,
        port: int,
        data_dir: Path,
        binary: Path,
        host: str = LOOPBACK,
        log_path: Path | None = None,
        start_timeout_seconds: float = START_TIMEOUT_SECONDS,
        stop_timeout_seconds: float = STOP_TIMEOUT_SECONDS,
    ) -> None:
        self.host = host
        self._log_path = log_path
        self.port = port
        self.data_dir = Path(data_dir)
        self.binary = Path(binary)
        self.start_timeout_seconds = start_timeout_seconds
        self.stop_timeout_seconds = stop_timeout_seconds
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self._log_path or self.data_dir / f"{self.name}.log"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @abstractmethod
    def command(self) -> list[str]:
        """The argv that runs the server; may write config files into data_dir first."""

    @abstractmethod
    def is_ready(self) -> bool:
        """Whether the server serves requests now."""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _log_tail(self.log_path, lines)

    def start(self, *, detach: bool = False) -> None:
        """Start the server and wait until it is ready.

        `detach` puts it in its own session so it outlives this interpreter (`stack up`);
        otherwise an exit hook kills it if nobody stopped it.
        """
        if self.is_running():
            return
        check_port_free(self.port, host=self.host, env_var=self.env_var)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = self.command()
        env = self.environment()
        logger.info("starting %s on %s: %s", self.name, self.address, " ".join(argv))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                argv,
                cwd=self.data_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=detach,
            )
        if not detach:
            _ATTACHED.add(self)
        deadline = time.monotonic() + self.start_timeout_seconds
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self._proc.returncode} while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if self.is_ready():
                logger.info("%s ready on %s (pid %d)", self.name, self.address, self._proc.pid)
                return
            time.sleep(READY_POLL_SECONDS)
        self.kill()
        raise RuntimeError(
            f"{self.name} did not become ready on {self.address} within "
            f"{self.start_timeout_seconds:.0f} s; log {self.log_path}:\n{self.log_tail()}"
        )

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the stop timeout. Data stays."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        logger.info("stopping %s (pid %d)", self.name, proc.pid)
        proc.terminate()
        try:
            proc.wait(timeout=self.stop_timeout_seconds)
        except subprocess.TimeoutExpired:
            logger.warning(
                "%s ignored SIGTERM for %.0f s: killing", self.name, self.stop_timeout_seconds
            )
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL, no shutdown: what a crash or power cut looks like."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        logger.info("killing %s (pid %d)", self.name, proc.pid)
        proc.kill()
        proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class MosquittoProcess(ManagedProcess):
    """Mosquitto 2.x with persistence, anonymous access, on loopback only."""

    name = "mosquitto"
    env_var = "MQTT_PORT"

    def __init__(
        self,
        *,
        port: int,
        data_dir: Path,
        binary: Path = Path("/usr/sbin/mosquitto"),
        autosave_interval_seconds: int = 2,
        max_inflight_messages: int = 100,
        listener_conf: str | None = None,
        **options: Unpack[ProcessOptions],
    ) -> None:
        """`listener_conf` replaces the anonymous loopback listener (e.g. the output of
        `stack.security.secure_listener_conf`); `port` is then the one readiness is probed on.
        """
        super().__init__(port=port, data_dir=data_dir, binary=binary, **options)
        self.autosave_interval_seconds = autosave_interval_seconds
        self.max_inflight_messages = max_inflight_messages
        self.listener_conf = listener_conf

    @property
    def config_path(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    def config_text(self) -> str:
        return render_mosquitto_conf(
            host=self.host,
            port=self.port,
            data_dir=self.data_dir,
            log_path=self.log_path,
            autosave_interval_seconds=self.autosave_interval_seconds,
            max_inflight_messages=self.max_inflight_messages,
            listener_conf=self.listener_conf,
        )

    def command(self) -> list[str]:
        self.config_path.write_text(self.config_text())
        return [str(self.binary), "-c", str(self.config_path)]

    def is_ready(self) -> bool:
        return tcp_accepts(self.host, self.port)


def render_mosquitto_conf(
    *,
    host: str,
    port: int,
    data_dir: Path,
    log_path: Path,
    autosave_interval_seconds: int = 2,
    max_inflight_messages: int = 100,
    listener_conf: str | None = None,
) -> str:
    """mosquitto.conf for one loopback broker that keeps QoS 1 messages for paused clients."""
    listeners = (
        listener_conf.strip().splitlines()
        if listener_conf is not None
        else ["per_listener_settings false", f"listener {port} {host}", "allow_anonymous true"]
    )
    return "\n".join(
        [
            "# Written by edgewatch (stack/processes.py); rewritten on every start.",
            # Running as root, Mosquitto would switch to the `mosquitto` user, which cannot
            # write a data dir made by root; the broker only ever listens on loopback.
            "user root",
            "persistence true",
            f"persistence_location {data_dir}/",
            # Mosquitto saves its store only on shutdown unless told otherwise; a short
            # interval bounds what a SIGKILL loses.
            f"autosave_interval {autosave_interval_seconds}",
            # A paused consumer (InfluxDB down, the ingest stops acknowledging) keeps its
            # persistent session: the broker must hold everything queued for it meanwhile.
            "max_queued_messages 1000000",
            "max_queued_bytes 0",
            f"max_inflight_messages {max_inflight_messages}",
            "set_tcp_nodelay true",
            f"log_dest file {log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            # Listener lines last: in Mosquitto, options after a `listener` belong to it.
            *listeners,
            "",
        ]
    )


# No read load may take the database down (docs/architecture.md, "Query limits"): at most
# QUERY_CONCURRENCY Flux queries run at once, QUERY_QUEUE_SIZE more wait, each query may hold
# QUERY_MEMORY_BYTES and all together QUERY_MAX_MEMORY_BYTES; a query past its share fails
# with an error instead of growing influxd until the kernel kills it. docker-compose.yml
# passes the same figures as INFLUXD_* variables.
QUERY_CONCURRENCY = 4
QUERY_QUEUE_SIZE = 32
QUERY_INITIAL_MEMORY_BYTES = 16 * 1024 * 1024
QUERY_MEMORY_BYTES = 256 * 1024 * 1024
QUERY_MAX_MEMORY_BYTES = 1024 * 1024 * 1024
# Go's soft memory limit for influxd: the query limits bound Flux alone, not InfluxQL (the
# fleet's shadow read), the write path or the TSM cache, so the runtime collects harder as the
# heap nears this instead of growing with the read load. 10 uncached overview clients on
# 10,000 devices for 10 minutes peaked at 1.86 GB RSS without it (BENCHMARKS.md).
INFLUXD_GO_MEMORY_LIMIT = "1536MiB"


def query_limit_flags() -> list[str]:
    return [
        "--query-concurrency", str(QUERY_CONCURRENCY),
        "--query-queue-size", str(QUERY_QUEUE_SIZE),
        "--query-initial-memory-bytes", str(QUERY_INITIAL_MEMORY_BYTES),
        "--query-memory-bytes", str(QUERY_MEMORY_BYTES),
        "--query-max-memory-bytes", str(QUERY_MAX_MEMORY_BYTES),
    ]  # fmt: skip


class InfluxdProcess(ManagedProcess):
    """influxd 2.x with all its state under data_dir, HTTP on loopback only."""

    name = "influxd"
    env_var = "INFLUXDB_V2_URL"

    def __init__(
        self,
        *,
        http_port: int,
        data_dir: Path,
        binary: Path,
        log_level: str = "warn",
        **options: Unpack[ProcessOptions],
    ) -> None:
        super().__init__(port=http_port, data_dir=data_dir, binary=binary, **options)
        self.log_level = log_level

    @property
    def http_port(self) -> int:
        return self.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        # influxd 2.x has one listener, the HTTP API (the 1.x 8088 RPC port is gone).
        return [
            str(self.binary),
            "--http-bind-address",
            self.address,
            "--bolt-path",
            str(self.data_dir / "influxd.bolt"),
            "--engine-path",
            str(self.data_dir / "engine"),
            "--sqlite-path",
            str(self.data_dir / "influxd.sqlite"),
            "--reporting-disabled",
            "--log-level",
            self.log_level,
            *query_limit_flags(),
        ]

    def environment(self) -> dict[str, str]:
        # influxd reads INFLUXD_* variables as flags; a stray one must not change our setup.
        kept = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXD_")}
        return {**kept, "GOMEMLIMIT": INFLUXD_GO_MEMORY_LIMIT}

    def is_ready(self) -> bool:
        return influxd_healthy(self.url)


@atexit.register
def stop_all_attached() -> None:
    """Kill every process started without `detach` that is still running."""
    for proc in list(_ATTACHED):
        with contextlib.suppress(Exception):
            proc.kill()


def dashboard_healthy(url: str, timeout_seconds: float = 2.0) -> bool:
    """Whether the Streamlit server at `url` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout_seconds) as resp:  # noqa: S310 - loopback
            return bool(resp.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def served_dashboard(
    argv: list[str],
    *,
    environment: dict[str, str],
    port: int,
    log_path: Path,
    cwd: Path | None = None,
    start_timeout_seconds: float = START_TIMEOUT_SECONDS,
) -> Iterator[tuple[str, int]]:
    """`argv` (`edgewatch dashboard`) serving on `port`: (url, pid) once it answers; its
    process group stopped on exit. Raises RuntimeError with the log's tail if it does not
    come up.

    The dashboard gets a process group of its own, so stopping it also stops whatever it
    started; `edgewatch dashboard` becomes Streamlit (execve), so the pid is the server's.
    """
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + start_timeout_seconds
        while not dashboard_healthy(url):
            if proc.poll() is not None:
                raise RuntimeError(f"the dashboard exited: {_log_tail(log_path)}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the dashboard did not answer in {start_timeout_seconds:g} s: "
                    f"{_log_tail(log_path)}"
                )
            time.sleep(0.3)
        yield url, proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
