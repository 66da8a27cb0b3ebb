"""stack: the local stack room.

Builds and caches `influxd`, runs Mosquitto and InfluxDB on loopback, bootstraps buckets
and tokens. The test fixtures use the same code as `edgewatch stack up`.
It may touch processes and files under the state and cache dirs; nothing else.
"""
