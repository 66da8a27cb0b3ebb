// The telemetry metrics that exist for the given devices, in raw data and in the 1-hour
// rollups (a long range may reach back past the raw bucket's retention). last() right after
// the filter runs in the storage engine: one row per series of the selected devices.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), bucket_1h (string), start (time), start_1h (time),
//         s0, d0, s1, d1, ... (string: site and device of each selected device)
// ${devices} is replaced by dashboard.data.device_filter's predicate before the query runs.
raw =
    from(bucket: _bucket)
        |> range(start: _start)
        |> filter(fn: (r) => r._measurement == "telemetry" and (${devices}))
        |> last()
        |> keep(columns: ["_field"])
        |> group()
        |> distinct(column: "_field")
hourly =
    from(bucket: _bucket_1h)
        |> range(start: _start_1h)
        |> filter(fn: (r) => r._measurement == "telemetry" and r.stat == "mean" and (${devices}))
        |> last()
        |> keep(columns: ["_field"])
        |> group()
        |> distinct(column: "_field")

union(tables: [raw, hourly])
    |> group()
    |> distinct(column: "_value")
