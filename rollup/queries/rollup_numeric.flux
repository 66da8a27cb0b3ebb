// Mean, min, max and count per window of the numeric telemetry of some devices, raw -> a
// rollup bucket (tag stat = mean|min|max|count; count as a float, so a field keeps one type).
// Each branch is from |> range |> filter |> aggregateWindow with nothing in between and only
// tag and field equalities in the filter, so InfluxDB runs it in the storage engine
// (ReadWindowAggregate): raw points never reach Flux, only one row per series and window.
// params (Flux options, names prefixed "_"): raw, target (string), start, stop (time),
//         every (duration), d0, d1, ... (device names), b0, b1, ... (boolean fields, excluded)
// ${devices}: `r.device == _d0 or ...`; ${numeric}: `r._field != _b0 and ...` or `true`,
// both built by rollup.plan from parameter names only.
means =
    from(bucket: _raw)
        |> range(start: _start, stop: _stop)
        |> filter(fn: (r) => r._measurement == "telemetry" and (${numeric}) and (${devices}))
        |> aggregateWindow(every: _every, fn: mean, createEmpty: false, timeSrc: "_start")
        |> set(key: "stat", value: "mean")
mins =
    from(bucket: _raw)
        |> range(start: _start, stop: _stop)
        |> filter(fn: (r) => r._measurement == "telemetry" and (${numeric}) and (${devices}))
        |> aggregateWindow(every: _every, fn: min, createEmpty: false, timeSrc: "_start")
        |> set(key: "stat", value: "min")
maxes =
    from(bucket: _raw)
        |> range(start: _start, stop: _stop)
        |> filter(fn: (r) => r._measurement == "telemetry" and (${numeric}) and (${devices}))
        |> aggregateWindow(every: _every, fn: max, createEmpty: false, timeSrc: "_start")
        |> set(key: "stat", value: "max")
counts =
    from(bucket: _raw)
        |> range(start: _start, stop: _stop)
        |> filter(fn: (r) => r._measurement == "telemetry" and (${numeric}) and (${devices}))
        |> aggregateWindow(every: _every, fn: count, createEmpty: false, timeSrc: "_start")
        |> toFloat()
        |> set(key: "stat", value: "count")

union(tables: [means, mins, maxes, counts])
    |> drop(columns: ["_start", "_stop"])
    |> to(bucket: _target)
    |> count()
    |> group()
    |> sum()
