// The telemetry metrics that exist for the given devices, in raw data and in the 1-hour
// rollups (a long range may reach back past the raw bucket's retention).
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), bucket_1h (string), start (time), start_1h (time), keys ([string] "site/device")
import "influxdata/influxdb/schema"

raw =
    from(bucket: _bucket)
        |> range(start: _start)
        |> filter(fn: (r) => r._measurement == "telemetry")
        |> filter(fn: (r) => contains(value: r.site + "/" + r.device, set: _keys))
        |> keep(columns: ["_field"])
        |> group()
        |> distinct(column: "_field")
hourly =
    from(bucket: _bucket_1h)
        |> range(start: _start_1h)
        |> filter(fn: (r) => r._measurement == "telemetry" and r.stat == "mean")
        |> filter(fn: (r) => contains(value: r.site + "/" + r.device, set: _keys))
        |> keep(columns: ["_field"])
        |> group()
        |> distinct(column: "_field")

union(tables: [raw, hourly])
    |> group()
    |> distinct(column: "_value")
