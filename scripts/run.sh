#!/usr/bin/env bash
# Run everything locally: Mosquitto, InfluxDB, the ingest, a simulated fleet and the
# dashboard, all on loopback. Arguments go to `edgewatch demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/setup.sh
source scripts/setup.sh
ensure_all

exec .venv/bin/edgewatch demo "$@"
