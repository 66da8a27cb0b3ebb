"""alerter room: server-side alert rules, notifications with delivery guarantees.

May import the shared core (`edgewatch/`) and talk to InfluxDB and notification receivers;
imports nothing from `dashboard/`, `ingest/`, `edge/` (see docs/architecture.md).
"""
