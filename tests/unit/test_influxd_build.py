"""The influxd build orchestration, run against fake `go`/`rustup` tools (no network, fast)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack import influxd
from stack.influxd import BuildError, ensure_influxd, influxd_path, stamp_ldflags

FAKE_GO = """#!/bin/sh
# Fake go: records its calls, answers like the real one for the steps the build uses.
echo "go $*" >> "$FAKE_CALLS"
case "$1" in
  mod) printf '{"Path": "x", "Dir": "%s"}' "$FAKE_SRC" ;;
  install) mkdir -p "$GOBIN" && printf '#!/bin/sh\\n' > "$GOBIN/pkg-config" ;;
  build)
    echo "toolchain=$RUSTUP_TOOLCHAIN pkgconfig=$PKG_CONFIG" >> "$FAKE_CALLS"
    echo "github.com/influxdata/flux/libflux/go/libflux"
    if [ -n "$FAKE_FAIL" ]; then echo "error: linker cc not found"; exit 1; fi
    while [ "$1" != "-o" ]; do shift; done
    printf '#!/bin/sh\\n' > "$2" ;;
esac
"""
FAKE_RUSTUP = """#!/bin/sh
echo "stable-x86_64-unknown-linux-gnu (active, default)"
echo "nightly-x86_64-unknown-linux-gnu"
"""


def _tool(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    _tool(bin_dir / "go", FAKE_GO)
    _tool(bin_dir / "rustup", FAKE_RUSTUP)
    for name in ("cargo", "gcc"):
        _tool(bin_dir / name, "#!/bin/sh\n")
    src = tmp_path / "modcache" / "influxdb@v2.9.1"
    (src / "cmd" / "influxd").mkdir(parents=True)
    (src / "go.mod").write_text(
        "module github.com/influxdata/influxdb/v2\n\nrequire (\n"
        "\tgithub.com/influxdata/pkg-config v0.2.14\n)\n"
    )
    src.chmod(0o555)  # the Go module cache is read-only
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SRC", str(src))
    monkeypatch.setenv("FAKE_CALLS", str(tmp_path / "calls.log"))
    monkeypatch.setenv("FAKE_FAIL", "")
    monkeypatch.setattr(influxd, "PROGRESS_INTERVAL_SECONDS", 0.01)
    yield tmp_path
    src.chmod(0o755)


def test_build_follows_the_recipe_and_caches_the_binary(fake_tools: Path) -> None:
    cache = fake_tools / "cache"
    lines: list[str] = []
    path = ensure_influxd(cache, "2.9.1", progress=lines.append)
    assert path == cache / "influxd-2.9.1-stamped"
    assert path.is_file() and not (cache / "influxd-2.9.1-stamped.tmp").exists()
    calls = (fake_tools / "calls.log").read_text()
    assert "go mod download -json github.com/influxdata/influxdb/v2@v2.9.1" in calls
    assert "go install github.com/influxdata/pkg-config@v0.2.14" in calls
    assert "-tags sqlite_foreign_keys,sqlite_json" in calls
    assert "-ldflags -X main.version=v2.9.1 -X main.date=" in calls
    assert "toolchain=stable-x86_64-unknown-linux-gnu" in calls
    assert f"pkgconfig={cache / 'bin' / 'pkg-config'}" in calls
    assert any("building influxd" in line for line in lines)
    # Cached: a second call builds nothing.
    (fake_tools / "calls.log").unlink()
    assert ensure_influxd(cache, "2.9.1", progress=lines.append) == path
    assert not (fake_tools / "calls.log").exists()


def test_a_failed_build_names_the_log_and_the_cause(
    fake_tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FAIL", "1")
    cache = fake_tools / "cache"
    with pytest.raises(BuildError) as exc:
        ensure_influxd(cache, "2.9.1", progress=lambda _line: None)
    message = str(exc.value)
    assert "linker cc not found" in message
    assert str(cache / "build" / "influxd-2.9.1-stamped.log") in message
    assert "edgewatch stack build-influxd" in message
    assert not (cache / "influxd-2.9.1-stamped").exists()


def test_without_build_a_missing_binary_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="edgewatch stack build-influxd"):
        ensure_influxd(tmp_path, "2.9.1", build=False)


def test_the_build_is_stamped_as_upstream_stamps_its_releases() -> None:
    flags = stamp_ldflags(
        "2.9.1", "d4fa1941fd4adb29a556e774de426dfbab72f346", "2026-11-27T21:40:00Z"
    )
    assert flags == (
        "-X main.version=v2.9.1 -X main.commit=d4fa1941fd -X main.date=2026-11-27T21:40:00Z"
    )
    # A stamped build never shares its cache entry with an unstamped one.
    assert influxd_path(Path("/c"), "2.9.1") != Path("/c/influxd-2.9.1")
