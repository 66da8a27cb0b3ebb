// One metric of several devices from a rollup bucket (tag stat = mean|min|max|count), re-windowed:
// mean of the means, min of the mins, max of the maxes, so spikes survive any window. A boolean
// metric is rolled up as 0/1 (rollup/), so it reads the same way: the share of true readings
// as the line, 0 and 1 as the band.
// Each branch is from |> range |> filter |> aggregateWindow with nothing in between and only
// tag and field equalities in the filter, so that InfluxDB runs it in the storage engine
// (ReadWindowAggregate) and reads only the selected devices' series of the one stat.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), stop (time), every (duration), metric (string),
//         s0, d0, s1, d1, ... (string: site and device of each selected device)
// ${devices} is replaced by dashboard.data.device_filter's predicate before the query runs:
// `(r.site == _s0 and r.device == _d0) or ...`, built from parameter names only.
means =
    from(bucket: _bucket)
        |> range(start: _start, stop: _stop)
        |> filter(fn: (r) => r._measurement == "telemetry" and r._field == _metric and r.stat == "mean" and (${devices}))
        |> aggregateWindow(every: _every, fn: mean, createEmpty: false, timeSrc: "_start")
mins =
    from(bucket: _bucket)
        |> range(start: _start, stop: _stop)
        |> filter(fn: (r) => r._measurement == "telemetry" and r._field == _metric and r.stat == "min" and (${devices}))
        |> aggregateWindow(every: _every, fn: min, createEmpty: false, timeSrc: "_start")
maxes =
    from(bucket: _bucket)
        |> range(start: _start, stop: _stop)
        |> filter(fn: (r) => r._measurement == "telemetry" and r._field == _metric and r.stat == "max" and (${devices}))
        |> aggregateWindow(every: _every, fn: max, createEmpty: false, timeSrc: "_start")

// One row per device and window, with mean, min and max columns: a third of the rows to send.
union(tables: [means, mins, maxes])
    |> keep(columns: ["_time", "_value", "site", "device", "stat"])
    |> group(columns: ["site", "device"])
    |> pivot(rowKey: ["_time"], columnKey: ["stat"], valueColumn: "_value")
