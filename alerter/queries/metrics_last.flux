// The latest value of the named metrics of every device, as floats (a boolean is 1.0 or 0.0).
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), metrics (array of strings)
from(bucket: _bucket)
    |> range(start: _start)
    |> filter(fn: (r) => r._measurement == "telemetry" and contains(value: r._field, set: _metrics))
    |> last()
    |> toFloat()
    |> keep(columns: ["_time", "site", "device", "_field", "_value"])
    |> group()
