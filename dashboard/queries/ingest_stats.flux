// The ingest's self-metrics over the range, one row per report and instance.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), stop (time)
from(bucket: _bucket)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => r._measurement == "ingest_stats")
    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    |> drop(columns: ["_start", "_stop", "_measurement"])
