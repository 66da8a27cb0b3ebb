// One metric of several devices from raw data: mean, min and max per window.
// Booleans count as 0/1 so that a flag such as camera_ok can be charted too.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), stop (time), every (duration), metric (string),
//         keys ([string] "site/device")
data =
    from(bucket: _bucket)
        |> range(start: _start, stop: _stop)
        |> filter(fn: (r) => r._measurement == "telemetry" and r._field == _metric)
        |> filter(fn: (r) => contains(value: r.site + "/" + r.device, set: _keys))
        |> map(fn: (r) => ({r with _value: float(v: r._value)}))
        |> keep(columns: ["_time", "_value", "site", "device"])

means = data |> aggregateWindow(every: _every, fn: mean, createEmpty: false, timeSrc: "_start") |> set(key: "stat", value: "mean")
mins = data |> aggregateWindow(every: _every, fn: min, createEmpty: false, timeSrc: "_start") |> set(key: "stat", value: "min")
maxes = data |> aggregateWindow(every: _every, fn: max, createEmpty: false, timeSrc: "_start") |> set(key: "stat", value: "max")

union(tables: [means, mins, maxes])
    |> keep(columns: ["_time", "_value", "site", "device", "stat"])
