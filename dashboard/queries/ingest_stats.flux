// The ingest's self-metrics over the range, one row per window and instance.
// Each instance reports on its own clock; aggregateWindow puts every instance's last report of
// a window at the window's end, so the reports of several replicas share their times and
// their rates can be summed per time (instead of alternating between one and the other).
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), stop (time), every (duration)
from(bucket: _bucket)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => r._measurement == "ingest_stats")
    |> aggregateWindow(every: _every, fn: last, createEmpty: false)
    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    |> drop(columns: ["_start", "_stop", "_measurement"])
