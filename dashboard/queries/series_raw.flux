// One numeric metric of several devices from raw data: mean, min and max per window.
// Each branch is from |> range |> filter |> aggregateWindow with nothing in between and only
// tag and field equalities in the filter, so that InfluxDB runs it in the storage engine
// (ReadWindowAggregate) and reads only the selected devices' series. The storage engine
// cannot aggregate booleans: those go through series_raw_bool.flux (see FleetStore.series).
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), stop (time), every (duration), metric (string),
//         s0, d0, s1, d1, ... (string: site and device of each selected device)
// ${devices} is replaced by dashboard.data.device_filter's predicate before the query runs:
// `(r.site == _s0 and r.device == _d0) or ...`, built from parameter names only.
means =
    from(bucket: _bucket)
        |> range(start: _start, stop: _stop)
        |> filter(fn: (r) => r._measurement == "telemetry" and r._field == _metric and (${devices}))
        |> aggregateWindow(every: _every, fn: mean, createEmpty: false, timeSrc: "_start")
        |> set(key: "stat", value: "mean")
mins =
    from(bucket: _bucket)
        |> range(start: _start, stop: _stop)
        |> filter(fn: (r) => r._measurement == "telemetry" and r._field == _metric and (${devices}))
        |> aggregateWindow(every: _every, fn: min, createEmpty: false, timeSrc: "_start")
        |> set(key: "stat", value: "min")
maxes =
    from(bucket: _bucket)
        |> range(start: _start, stop: _stop)
        |> filter(fn: (r) => r._measurement == "telemetry" and r._field == _metric and (${devices}))
        |> aggregateWindow(every: _every, fn: max, createEmpty: false, timeSrc: "_start")
        |> set(key: "stat", value: "max")

// One row per device and window, with mean, min and max columns: a third of the rows to send.
union(tables: [means, mins, maxes])
    |> keep(columns: ["_time", "_value", "site", "device", "stat"])
    |> group(columns: ["site", "device"])
    |> pivot(rowKey: ["_time"], columnKey: ["stat"], valueColumn: "_value")
