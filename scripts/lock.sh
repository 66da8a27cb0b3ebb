#!/usr/bin/env bash
# Refresh requirements.lock: every runtime and dev dependency of pyproject.toml pinned.
#   bash scripts/lock.sh                        # add what pyproject.toml gained, keep the rest
#   bash scripts/lock.sh --upgrade              # newest versions pyproject.toml allows
#   bash scripts/lock.sh --upgrade-package X    # only X
# Then `bash scripts/test.sh` (which installs from the new lock) before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/setup.sh
source scripts/setup.sh
ensure_venv
.venv/bin/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url \
    --no-emit-find-links --output-file requirements.lock "$@" pyproject.toml
