// As model_confidence_windows, from a rollup bucket's means.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), stop (time), every (duration)
from(bucket: _bucket)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => r._measurement == "telemetry" and r._field == "model_confidence" and r.stat == "mean")
    |> aggregateWindow(every: _every, fn: mean, createEmpty: false, timeSrc: "_start")
    |> map(fn: (r) => ({r with time_ns: int(v: r._time)}))
    |> keep(columns: ["time_ns", "site", "device", "_value"])
