#!/bin/sh
# Bootstrap an InfluxDB 2.x for edgewatch: buckets, rollup tasks, least-privilege tokens.
# The same code as `edgewatch stack up` (stack/bootstrap.py); safe to run any number of times.
# Needs INFLUXDB_V2_URL, INFLUXDB_V2_ORG and, for an instance set up elsewhere (the influxdb
# container's own setup), INFLUXDB_V2_TOKEN = its admin token. Writes the tokens it makes to
# $EDGEWATCH_STATE_DIR/credentials.json (mode 0600).
set -eu
exec edgewatch stack bootstrap "$@"
