#!/usr/bin/env bash
# Install steps shared by scripts/test.sh and scripts/run.sh; sourced, not run.
# Idempotent: installs only what is missing, runs `apt-get update` at most once, and
# reinstalls the Python project only when pyproject.toml or requirements.lock changed.

APT_PACKAGES=(mosquitto mosquitto-clients chromium pkg-config)

_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "need root for: $*" >&2
        return 1
    fi
}

ensure_apt_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "installing with apt-get: ${missing[*]}" >&2
        _as_root apt-get update -q
        DEBIAN_FRONTEND=noninteractive _as_root apt-get install -y -q "${missing[@]}"
    fi
}

ensure_venv() {
    # Installs exactly the versions in requirements.lock (the ones the tests passed with),
    # then the project itself without resolving anything; again only when either file changed.
    # Refresh the lock with `bash scripts/lock.sh` (README, "Dependencies").
    local python stamp want
    if [ ! -x .venv/bin/python ]; then
        python="$(command -v python3.11 || command -v python3)"
        echo "creating .venv with $python" >&2
        "$python" -m venv .venv
    fi
    stamp=.venv/.edgewatch-lock.sha256
    want="$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x .venv/bin/edgewatch ]; then
        echo "installing edgewatch and its dev tools into .venv from requirements.lock" >&2
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q --require-virtualenv -r requirements.lock
        .venv/bin/python -m pip install -q --no-deps -e .
        echo "$want" >"$stamp"
    fi
}

ensure_influxd() {
    # Builds influxd once (15-30 min on 2 cores, with progress lines); a no-op when cached.
    .venv/bin/edgewatch --log-level WARNING stack build-influxd
}

ensure_all() {
    # What scripts/run.sh and scripts/test.sh need before anything runs.
    ensure_apt_packages
    ensure_venv
    ensure_influxd
}
