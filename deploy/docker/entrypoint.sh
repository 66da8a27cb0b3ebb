#!/bin/sh
# Entry point of the edgewatch image: `docker run edgewatch <subcommand> ...`.
# A service's own secrets (made by the secrets-init service and mounted read-only at
# /run/edgewatch) are exported first: its broker account, its InfluxDB token, the CA.
set -eu
if [ -r /run/edgewatch/env ]; then
    set -a
    . /run/edgewatch/env
    set +a
fi
exec edgewatch "$@"
