#!/bin/sh
# Entry point of the edgewatch image: `docker run edgewatch <subcommand> ...`.
# When the bootstrap service has left credentials in the shared state volume, the
# least-privilege tokens it made are exported first (EDGEWATCH_INGEST_TOKEN, ...).
set -eu
creds="${EDGEWATCH_STATE_DIR:-/state}/credentials.json"
if [ -r "$creds" ] && [ "${1:-}" != "stack" ]; then
    eval "$(edgewatch stack env --export)"
fi
exec edgewatch "$@"
