// When each device was last heard from, from the state bucket (kept forever): one point per
// device per hour of receipt, overwritten by each telemetry message, with the exact receipt
// time (received_ns, the ingest's clock) and the newest reading's own time (reading_ns).
// last() right after the filter runs in the storage engine.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string, the state bucket), start (time), stop (time)
from(bucket: _bucket)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => r._measurement == "device_last_seen")
    |> last()
    |> keep(columns: ["_time", "site", "device", "_field", "_value"])
    |> group(columns: ["_field"])
