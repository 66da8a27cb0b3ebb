// edgewatch-rollup-1h: 1-hour rollups of the 1-minute bucket, 1m -> 1h bucket.
// Mean of the minute means, min of the minute mins, max of the minute maxes. Re-reads the
// last 3 closed hours so that minutes rolled up late are folded in; only closed hours.
import "date"

option task = {name: "${task_name}", every: 1h}

start = date.truncate(t: -3h, unit: 1h)
stop = date.truncate(t: now(), unit: 1h)

data =
    from(bucket: "${bucket_1m}")
        |> range(start: start, stop: stop)
        |> filter(fn: (r) => r._measurement == "telemetry")

means =
    data
        |> filter(fn: (r) => r.stat == "mean")
        |> aggregateWindow(every: 1h, fn: mean, createEmpty: false, timeSrc: "_start")
        |> set(key: "stat", value: "mean")
mins =
    data
        |> filter(fn: (r) => r.stat == "min")
        |> aggregateWindow(every: 1h, fn: min, createEmpty: false, timeSrc: "_start")
        |> set(key: "stat", value: "min")
maxes =
    data
        |> filter(fn: (r) => r.stat == "max")
        |> aggregateWindow(every: 1h, fn: max, createEmpty: false, timeSrc: "_start")
        |> set(key: "stat", value: "max")

union(tables: [means, mins, maxes])
    |> to(bucket: "${bucket_1h}")
