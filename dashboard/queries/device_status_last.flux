// The last value of every device_status field per device: state, reason, interval_s, model,
// model_version, firmware, lat, lon. Field-wise last, so a last will that carries only state
// and reason keeps the model and coordinates of the device's last birth.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time)
from(bucket: _bucket)
    |> range(start: _start)
    |> filter(fn: (r) => r._measurement == "device_status")
    |> last()
    |> keep(columns: ["_time", "site", "device", "_field", "_value"])
