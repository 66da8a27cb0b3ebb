"""stack room: the steps every binary we build from the Go module proxy shares (influxd for the
stack, Telegraf for the benchmarks): a writable copy of the module's source, logged build
steps, progress lines while `go build` runs, a lock so two callers never build twice.

Touches: the build log and the work dir it is given, and the processes it runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Progress = Callable[[str], None]
PROGRESS_INTERVAL_SECONDS = 20.0
LOG_TAIL_BYTES = 8192


class GoBuildError(RuntimeError):
    """A build step failed; the message names the step, its cause and the log file."""


_NOISE = re.compile(r"^\s*$|^#|^\s*(?:Compiling|Downloading|Downloaded)\s*$")


def last_meaningful_line(text: str) -> str:
    """The last non-blank log line, shortened: what a progress line shows."""
    for raw in reversed(text.splitlines()):
        if not _NOISE.match(raw):
            line = raw.strip()
            return line if len(line) <= 120 else line[:117] + "..."
    return "(no output yet)"


def log_tail(path: Path, max_bytes: int = LOG_TAIL_BYTES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock so two concurrent callers do not build twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_logged(
    cmd: list[str],
    *,
    log: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    error: type[RuntimeError] = GoBuildError,
) -> str:
    """Run a short build step, append its output to the log, raise `error` on failure."""
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n{result.stdout}{result.stderr}")
    if result.returncode != 0:
        raise error(
            f"`{' '.join(cmd)}` failed (exit {result.returncode}): "
            f"{last_meaningful_line(result.stderr or result.stdout)}; full log: {log}"
        )
    return result.stdout


def module_info(
    module: str, version: str, *, log: Path, error: type[RuntimeError] = GoBuildError
) -> dict[str, Any]:
    """`go mod download -json`: where the module's source is, and (`Origin`) its VCS commit."""
    info: dict[str, Any] = json.loads(
        run_logged(["go", "mod", "download", "-json", f"{module}@v{version}"], log=log, error=error)
    )
    return info


def origin_commit(info: dict[str, Any]) -> str | None:
    """The commit the module version was made from, as the proxy reports it (if it does)."""
    origin = info.get("Origin")
    commit = origin.get("Hash") if isinstance(origin, dict) else None
    return commit if isinstance(commit, str) and commit else None


def writable_module_copy(
    module: str, version: str, work: Path, *, log: Path, error: type[RuntimeError] = GoBuildError
) -> Path:
    """`go mod download` the module and copy its (read-only) source to `work`, writable."""
    info = module_info(module, version, log=log, error=error)
    if work.exists():
        # A copy left half-way keeps the module cache's read-only bits: make it removable.
        subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)
        shutil.rmtree(work)
    shutil.copytree(Path(info["Dir"]), work, symlinks=True)
    subprocess.run(["chmod", "-R", "u+w", str(work)], check=True)
    return work


def build_with_progress(
    cmd: list[str],
    *,
    cwd: Path,
    log: Path,
    what: str,
    progress: Progress,
    env: Mapping[str, str] | None = None,
    interval_seconds: float = PROGRESS_INTERVAL_SECONDS,
) -> int:
    """Run a long `go build`, its output to the log, with a progress line every interval."""
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
        try:
            started = time.monotonic()
            next_report = started + interval_seconds
            while proc.poll() is None:
                time.sleep(min(0.5, interval_seconds))
                if time.monotonic() >= next_report:
                    elapsed = int(time.monotonic() - started)
                    progress(
                        f"{what}: {elapsed // 60}m{elapsed % 60:02d}s, "
                        f"last: {last_meaningful_line(log_tail(log))}"
                    )
                    next_report += interval_seconds
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode


def go_build_binary(
    package: str,
    *,
    work: Path,
    final: Path,
    build_args: Sequence[str],
    log: Path,
    what: str,
    progress: Progress,
    env: Mapping[str, str] | None = None,
    interval_seconds: float = PROGRESS_INTERVAL_SECONDS,
    error: type[RuntimeError] = GoBuildError,
    advice: str = "",
) -> Path:
    """`go build` `package` in `work` to a temp file renamed over `final` once it is whole:
    a cached binary is complete or absent. A failure names the log's last meaningful line."""
    tmp = final.with_name(final.name + ".tmp")
    tmp.unlink(missing_ok=True)
    cmd = ["go", "build", *build_args, "-o", str(tmp), package]
    rc = build_with_progress(
        cmd,
        cwd=work,
        env=env,
        log=log,
        what=what,
        progress=progress,
        interval_seconds=interval_seconds,
    )
    if rc != 0 or not tmp.exists():
        raise error(
            f"{what} failed (exit {rc}): {last_meaningful_line(log_tail(log))}. "
            f"Full log: {log}.{advice}"
        )
    tmp.rename(final)
    return final
