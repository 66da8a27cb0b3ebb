// When each device last sent telemetry: the newest point over all of its metrics.
// last() right after the filter runs in the storage engine (one point per series); the rest
// folds those few rows into one per device, returned as a single table.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time)
from(bucket: _bucket)
    |> range(start: _start)
    |> filter(fn: (r) => r._measurement == "telemetry")
    |> last()
    |> keep(columns: ["_time", "site", "device"])
    |> group(columns: ["site", "device"])
    |> max(column: "_time")
    |> group()
