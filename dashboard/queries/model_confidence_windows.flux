// model_confidence of every device in fine windows, for drift (a device's recent windows
// against its own earliest ones). Raw bucket; see model_confidence_windows_rollup.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), stop (time), every (duration)
from(bucket: _bucket)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => r._measurement == "telemetry" and r._field == "model_confidence")
    |> aggregateWindow(every: _every, fn: mean, createEmpty: false, timeSrc: "_start")
    |> map(fn: (r) => ({r with time_ns: int(v: r._time)}))
    |> keep(columns: ["time_ns", "site", "device", "_value"])
