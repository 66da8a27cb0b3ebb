// Drift: each device's model_confidence in 10 bins on 0..1 (cumulative counts, column le),
// over the first third of the range (window "baseline") and over its last third ("recent").
// Counted in InfluxDB, so the page receives 22 rows per device, whatever the range.
// From raw data; model_confidence_histogram_rollup reads a rollup bucket's means.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), split1 (time), split2 (time), stop (time)
bins = linearBins(start: 0.0, width: 0.1, count: 11, infinity: false)

baseline =
    from(bucket: _bucket)
        |> range(start: _start, stop: _split1)
        |> filter(fn: (r) => r._measurement == "telemetry" and r._field == "model_confidence")
        |> histogram(bins: bins)
        |> set(key: "window", value: "baseline")
recent =
    from(bucket: _bucket)
        |> range(start: _split2, stop: _stop)
        |> filter(fn: (r) => r._measurement == "telemetry" and r._field == "model_confidence")
        |> histogram(bins: bins)
        |> set(key: "window", value: "recent")

union(tables: [baseline, recent])
    |> keep(columns: ["site", "device", "window", "le", "_value"])
