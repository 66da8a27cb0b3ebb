// The first and the last value of one metric of every device in the window: the rate of
// change is (last - first) / (time between them).
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), metric (string)
// first() and last() right after the filter run in the storage engine.
data = from(bucket: _bucket)
    |> range(start: _start)
    |> filter(fn: (r) => r._measurement == "telemetry" and r._field == _metric)
union(tables: [data |> first(), data |> last()])
    |> toFloat()
    |> map(fn: (r) => ({r with time_ns: int(v: r._time)}))
    |> keep(columns: ["time_ns", "site", "device", "_value"])
    |> group()
