// One metric of several devices from a rollup bucket (tag stat = mean|min|max), re-windowed:
// mean of the means, min of the mins, max of the maxes, so spikes survive any window.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), stop (time), every (duration), metric (string),
//         keys ([string] "site/device")
data =
    from(bucket: _bucket)
        |> range(start: _start, stop: _stop)
        |> filter(fn: (r) => r._measurement == "telemetry" and r._field == _metric)
        |> filter(fn: (r) => contains(value: r.site + "/" + r.device, set: _keys))
        |> keep(columns: ["_time", "_value", "site", "device", "stat"])

means = data |> filter(fn: (r) => r.stat == "mean") |> aggregateWindow(every: _every, fn: mean, createEmpty: false, timeSrc: "_start")
mins = data |> filter(fn: (r) => r.stat == "min") |> aggregateWindow(every: _every, fn: min, createEmpty: false, timeSrc: "_start")
maxes = data |> filter(fn: (r) => r.stat == "max") |> aggregateWindow(every: _every, fn: max, createEmpty: false, timeSrc: "_start")

union(tables: [means, mins, maxes])
    |> keep(columns: ["_time", "_value", "site", "device", "stat"])
