// When each device last sent telemetry: the ingest writes one `device_seen` point per
// telemetry message, so this reads one series per device (not one per metric). last() right
// after the filter runs in the storage engine.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time)
from(bucket: _bucket)
    |> range(start: _start)
    |> filter(fn: (r) => r._measurement == "device_seen" and r._field == "readings")
    |> last()
    |> keep(columns: ["_time", "site", "device"])
    |> group()
