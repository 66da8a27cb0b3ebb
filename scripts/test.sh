#!/usr/bin/env bash
# The test command: installs what is missing, then lint, types, the room rules and every test.
#   bash scripts/test.sh                  # everything
#   bash scripts/test.sh tests/unit -x    # arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/setup.sh
source scripts/setup.sh
ensure_all

echo "== ruff check" >&2
.venv/bin/ruff check .
echo "== ruff format --check" >&2
.venv/bin/ruff format --check .
echo "== mypy" >&2
.venv/bin/mypy
echo "== lint-imports (the room rules, pyproject.toml [tool.importlinter])" >&2
.venv/bin/lint-imports
echo "== pytest $*" >&2
status=0
# A temp dir of this run's own: pytest's shared default would let two runs on one machine
# remove each other's; removed at exit (no temp dir left behind).
basetemp="$(mktemp -d -t edgewatch-pytest-XXXXXX)"
trap 'rm -rf "$basetemp"' EXIT
.venv/bin/pytest --basetemp="$basetemp" "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$status"
