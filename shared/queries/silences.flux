// Every silence and maintenance-window change (create, expire) in the range.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string, ops), start (time)
from(bucket: _bucket)
    |> range(start: _start)
    |> filter(fn: (r) => r._measurement == "silence")
    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    |> map(fn: (r) => ({r with time_ns: int(v: r._time)}))
    |> drop(columns: ["_start", "_stop", "_measurement"])
    |> group()
