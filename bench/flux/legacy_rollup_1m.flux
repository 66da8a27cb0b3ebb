// edgewatch-rollup-1m: 1-minute mean, min and max of numeric telemetry, raw -> 1m bucket.
// Re-reads the last 10 closed minutes on every run so that late points (ingest lag, an edge
// replaying its store-and-forward queue) are folded in; a rewrite overwrites the same point.
// Only closed minutes are written: the current one would be a partial aggregate.
import "date"
import "types"

option task = {name: "${task_name}", every: 1m}

start = date.truncate(t: -10m, unit: 1m)
stop = date.truncate(t: now(), unit: 1m)

data =
    from(bucket: "${raw_bucket}")
        |> range(start: start, stop: stop)
        |> filter(fn: (r) => r._measurement == "telemetry")
        |> filter(fn: (r) => types.isType(v: r._value, type: "float"))

means =
    data
        |> aggregateWindow(every: 1m, fn: mean, createEmpty: false, timeSrc: "_start")
        |> set(key: "stat", value: "mean")
mins =
    data
        |> aggregateWindow(every: 1m, fn: min, createEmpty: false, timeSrc: "_start")
        |> set(key: "stat", value: "min")
maxes =
    data
        |> aggregateWindow(every: 1m, fn: max, createEmpty: false, timeSrc: "_start")
        |> set(key: "stat", value: "max")

union(tables: [means, mins, maxes])
    |> to(bucket: "${bucket_1m}")
