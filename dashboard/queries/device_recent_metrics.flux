// The latest value of each metric of one device.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), site (string), device (string)
from(bucket: _bucket)
    |> range(start: _start)
    |> filter(fn: (r) => r._measurement == "telemetry")
    |> filter(fn: (r) => r.site == _site and r.device == _device)
    |> last()
    |> keep(columns: ["_time", "_field", "_value"])
