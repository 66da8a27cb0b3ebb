// Boolean telemetry (such as camera_ok) of some devices as 0/1, raw -> a rollup bucket: the
// mean is the share of true readings, min and max are 0 or 1, count the readings; floats,
// like every rollup field. The storage engine cannot aggregate booleans, so only the
// predicate is pushed down (the named boolean fields of the named devices) and Flux
// aggregates what it reads: bounded by the device chunk and the time chunk.
// params: raw, target (string), start, stop (time), every (duration), d0, ... (device
//         names), b0, ... (boolean fields); ${devices}: `r.device == _d0 or ...`,
//         ${flags}: `r._field == _b0 or ...`, built by rollup.plan from parameter names only.
data =
    from(bucket: _raw)
        |> range(start: _start, stop: _stop)
        |> filter(fn: (r) => r._measurement == "telemetry" and (${flags}) and (${devices}))
        |> toFloat()

means =
    data
        |> aggregateWindow(every: _every, fn: mean, createEmpty: false, timeSrc: "_start")
        |> set(key: "stat", value: "mean")
mins =
    data
        |> aggregateWindow(every: _every, fn: min, createEmpty: false, timeSrc: "_start")
        |> set(key: "stat", value: "min")
maxes =
    data
        |> aggregateWindow(every: _every, fn: max, createEmpty: false, timeSrc: "_start")
        |> set(key: "stat", value: "max")
counts =
    data
        |> aggregateWindow(every: _every, fn: count, createEmpty: false, timeSrc: "_start")
        |> toFloat()
        |> set(key: "stat", value: "count")

union(tables: [means, mins, maxes, counts])
    |> drop(columns: ["_start", "_stop"])
    |> to(bucket: _target)
    |> count()
    |> group()
    |> sum()
