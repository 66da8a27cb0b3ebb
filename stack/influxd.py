"""stack room: make sure the binaries the local stack runs are on this machine.

`influxd` is built from its Go module source (no prebuilt download is reachable from every
machine this project runs on) and cached under the cache dir; Mosquitto comes from apt.
Touches: the cache dir, a build log there, `go`/`rustup`/`apt-get` subprocesses.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from stack.gobuild import (
    Progress,
    file_lock,
    go_build_binary,
    last_meaningful_line,
    module_info,
    origin_commit,
    run_logged,
    writable_module_copy,
)

logger = logging.getLogger(__name__)

MOSQUITTO_BINARY = Path("/usr/sbin/mosquitto")
INFLUXDB_MODULE = "github.com/influxdata/influxdb/v2"
PKG_CONFIG_MODULE = "github.com/influxdata/pkg-config"
BUILD_TAGS = "sqlite_foreign_keys,sqlite_json"
PROGRESS_INTERVAL_SECONDS = 20.0
FOREIGN_BUILD_POLL_SECONDS = 5.0
# Bump when the build recipe changes what the binary is (see `build_key`).
BUILD_RECIPE = "stamped"
SHORT_COMMIT_CHARS = 10  # as upstream's releases print it: "InfluxDB v2.9.1 (git: d4fa1941fd)"


class BuildError(RuntimeError):
    """The influxd build failed; the message names the log file and the fix."""


def build_key(version: str) -> str:
    """The cache key of a build of `version` by this recipe.

    The recipe is part of the key: a binary stamped with its version never shares a name with
    an unstamped one, so a cache that holds the older build is rebuilt, not trusted.
    """
    return f"influxd-{version}-{BUILD_RECIPE}"


def influxd_path(cache_dir: Path, version: str) -> Path:
    """Where the cached binary of `version` lives."""
    return cache_dir / build_key(version)


def build_log_path(cache_dir: Path, version: str) -> Path:
    return cache_dir / "build" / f"{build_key(version)}.log"


def stamp_ldflags(version: str, commit: str | None, date: str) -> str:
    """The linker flags upstream's release build sets (`influxd version` prints them).

    Upstream's GNUmakefile and goreleaser stamp `main.version` (the tag, "v2.9.1"),
    `main.commit` (the short commit) and `main.date` (RFC 3339). A commit the module proxy
    did not report is left unstamped rather than made up.
    """
    flags = [f"-X main.version=v{version}"]
    if commit is not None:
        flags.append(f"-X main.commit={commit[:SHORT_COMMIT_CHARS]}")
    flags.append(f"-X main.date={date}")
    return " ".join(flags)


def parse_go_mod_require(go_mod: str, module: str) -> str:
    """The version `go.mod` requires for `module` (single-line or block `require`)."""
    pattern = re.compile(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", re.MULTILINE)
    match = pattern.search(go_mod)
    if match is None:
        raise BuildError(f"go.mod does not require {module}")
    return match.group(1)


def first_rustup_toolchain(rustup_output: str) -> str:
    """The first toolchain name in `rustup toolchain list` output ("stable-... (default)")."""
    for raw in rustup_output.splitlines():
        line = raw.strip()
        if line and not line.startswith("no installed"):
            return line.split(" ", 1)[0]
    raise BuildError(
        "rustup lists no toolchain: install one with `rustup toolchain install stable` "
        "(Flux, which influxd links, is written in Rust)"
    )


def _pids_writing(target: Path) -> list[int]:
    """Pids of `go build` processes (ours or anyone's) whose output is `target`."""
    pids: list[int] = []
    needle = str(target).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"build" in argv and b"-o" in argv and needle in argv:
            pids.append(int(entry.name))
    return pids


def _wait_for_foreign_build(target: Path, progress: Progress) -> None:
    """Someone else (another shell, the lead's manual build) is writing `target`: wait."""
    started = time.monotonic()
    next_report = started
    while _pids_writing(target):
        if time.monotonic() >= next_report:
            elapsed = int(time.monotonic() - started)
            progress(f"another influxd build is writing {target}; waiting ({elapsed}s)")
            next_report += PROGRESS_INTERVAL_SECONDS
        time.sleep(FOREIGN_BUILD_POLL_SECONDS)


def _install_pkg_config(work: Path, bin_dir: Path, log: Path) -> None:
    """influxdata's pkg-config wrapper, at the version influxd's go.mod asks for: it builds
    Flux's Rust library when cgo asks for it."""
    pkg_config_version = parse_go_mod_require((work / "go.mod").read_text(), PKG_CONFIG_MODULE)
    result = subprocess.run(
        ["go", "install", f"{PKG_CONFIG_MODULE}@{pkg_config_version}"],
        env=dict(os.environ, GOBIN=str(bin_dir)),
        capture_output=True,
        text=True,
        check=False,
    )
    with log.open("a") as f:
        f.write(result.stdout + result.stderr)
    if result.returncode != 0:
        raise BuildError(f"installing pkg-config {pkg_config_version} failed; log: {log}")


def build_influxd(cache_dir: Path, version: str, *, progress: Progress) -> Path:
    """Build influxd `version` from its Go module into the cache. Takes 15-30 min on 2 cores."""
    final = influxd_path(cache_dir, version)
    log = build_log_path(cache_dir, version)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    for tool in ("go", "rustup", "cargo", "gcc"):
        if shutil.which(tool) is None:
            raise BuildError(
                f"`{tool}` is not on PATH; building influxd needs Go, Rust (rustup) and a C "
                "compiler: install them, then run `edgewatch stack build-influxd` again"
            )

    progress(f"building influxd {version} (15-30 min on 2 cores); log: {log}")
    work = writable_module_copy(
        INFLUXDB_MODULE,
        version,
        # One source copy per version, whatever the recipe: Go's build cache stays warm.
        cache_dir / "build" / f"influxdb-{version}",
        log=log,
        error=BuildError,
    )
    commit = origin_commit(module_info(INFLUXDB_MODULE, version, log=log, error=BuildError))
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    bin_dir = cache_dir / "bin"
    _install_pkg_config(work, bin_dir, log)
    toolchain = first_rustup_toolchain(
        run_logged(["rustup", "toolchain", "list"], log=log, error=BuildError)
    )
    # Flux's rust-toolchain.toml pins a Rust release that cannot be downloaded here; the
    # environment variable overrides the pin with a toolchain that is installed.
    build_env = dict(os.environ, PKG_CONFIG=str(bin_dir / "pkg-config"), RUSTUP_TOOLCHAIN=toolchain)
    with log.open("a") as f:
        f.write(f"RUSTUP_TOOLCHAIN={toolchain}\n")
    go_build_binary(
        "./cmd/influxd",
        work=work,
        final=final,
        build_args=[
            "-v",
            "-tags",
            BUILD_TAGS,
            "-ldflags",
            stamp_ldflags(version, commit, date),
        ],
        env=build_env,
        log=log,
        what=f"building influxd {version}",
        progress=progress,
        interval_seconds=PROGRESS_INTERVAL_SECONDS,
        error=BuildError,
        advice=" Fix the cause shown there (missing C compiler, Rust toolchain or disk space "
        "are the usual ones), then run `edgewatch stack build-influxd` again; finished "
        "packages are cached by Go.",
    )
    progress(f"influxd {version} built: {final}")
    return final


def ensure_influxd(
    cache_dir: Path, version: str, *, progress: Progress | None = None, build: bool = True
) -> Path:
    """The path of a working influxd `version`, building it once if it is not cached."""
    say: Progress = progress or logger.info
    final = influxd_path(cache_dir, version)
    if final.is_file():
        return final
    with file_lock(cache_dir / f"{build_key(version)}.lock"):
        tmp = final.with_name(final.name + ".tmp")
        _wait_for_foreign_build(tmp, say)
        if final.is_file():  # built by whoever held the lock or ran the foreign build
            return final
        if not build:
            raise RuntimeError(
                f"influxd {version} is not built yet ({final} is missing): "
                "run `edgewatch stack build-influxd` (15-30 min once, then cached)"
            )
        return build_influxd(cache_dir, version, progress=say)


def ensure_mosquitto(*, progress: Progress | None = None) -> Path:
    """The Mosquitto broker binary, installed from apt if missing."""
    say: Progress = progress or logger.info
    if MOSQUITTO_BINARY.is_file():
        return MOSQUITTO_BINARY
    if shutil.which("apt-get") is None:
        raise RuntimeError(
            f"{MOSQUITTO_BINARY} is missing and apt-get is not available: install Mosquitto 2.x"
        )
    say("installing mosquitto with apt-get")
    for cmd in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "mosquitto", "mosquitto-clients"],
    ):
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(cmd)}` failed: {last_meaningful_line(result.stderr)} "
                "(it needs root; run it yourself, then retry)"
            )
    if not MOSQUITTO_BINARY.is_file():
        raise RuntimeError(f"mosquitto was installed but {MOSQUITTO_BINARY} is still missing")
    return MOSQUITTO_BINARY
