"""stack room: write the device shadow once from the state bucket's history (an upgrade).

A store written before the shadow existed has every status and last-seen in the state bucket
but no `device_shadow`, so the fleet overview would list only the devices heard since. This
reads the history the slow way (the field-wise last of `device_status` and
`device_last_seen`, ~50 µs a series inside influxd, once), folds it with the same reader the
overview used before (`edgewatch.rows.parse_snapshots`) and writes each device's shadow under
the writer `rebuilt` (`edgewatch.schema.rebuilt_shadow_lines`). Safe to run again and while
the ingest runs: what an ingest heard later carries a later receipt time and wins.
Touches: InfluxDB (Flux reads, one write per batch of lines).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision

from edgewatch.rows import parse_snapshots, rebuilt_shadow_lines
from shared.flux import SHARED_QUERIES_DIR, read_flux

BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_SKEW = timedelta(days=1)
WRITE_BATCH_LINES = 5000
TIMEOUT_MS = 600_000


def rebuild_shadow(
    *, url: str, token: str, org: str, bucket_state: str, progress: Callable[[str], None]
) -> int:
    """Write the shadow of every device the history knows; the number of devices."""
    params = {
        "_bucket": bucket_state,
        "_start": BEGINNING,
        "_stop": datetime.now(tz=UTC) + FUTURE_SKEW,
    }
    with InfluxDBClient(url=url, token=token, org=org, timeout=TIMEOUT_MS) as client:
        rows = {}
        for name in ("state_device_status", "state_last_seen"):
            progress(f"reading {name} from {bucket_state} (one pass over the history)")
            tables = client.query_api().query(
                read_flux(SHARED_QUERIES_DIR, name), org=org, params=params
            )
            rows[name] = [dict(record.values) for table in tables for record in table.records]
        snapshots, info = parse_snapshots(rows["state_device_status"], rows["state_last_seen"])
        lines = [
            text
            for snapshot in snapshots
            for text in rebuilt_shadow_lines(snapshot, info[(snapshot.site, snapshot.device)])
        ]
        with client.write_api(write_options=SYNCHRONOUS) as writer:
            for first in range(0, len(lines), WRITE_BATCH_LINES):
                batch = lines[first : first + WRITE_BATCH_LINES]
                writer.write(
                    bucket=bucket_state, org=org, record=batch, write_precision=WritePrecision.NS
                )
                progress(f"shadow: {first + len(batch):,}/{len(lines):,} lines written")
    return len(snapshots)
