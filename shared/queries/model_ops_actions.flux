// Operators' release registrations and device labels (ops bucket), oldest first.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string, the ops bucket), start (time), stop (time)
from(bucket: _bucket)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => r._measurement == "release_action" or r._measurement == "label_action")
    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    |> map(fn: (r) => ({r with time_ns: int(v: r._time)}))
    |> group()
    |> sort(columns: ["time_ns"])
