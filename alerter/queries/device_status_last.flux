// The last value of every device_status field per device: state, reason, interval_s, model,
// model_version, firmware, lat, lon. Field-wise last, so a last will that carries only state
// and reason keeps the model and coordinates of the device's last birth. last() right after
// the filter runs in the storage engine; the result is regrouped by field (one table per
// field, one type each) so that the client reads a few tables instead of one per series.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time)
from(bucket: _bucket)
    |> range(start: _start)
    |> filter(fn: (r) => r._measurement == "device_status")
    |> last()
    |> keep(columns: ["_time", "site", "device", "_field", "_value"])
    |> group(columns: ["_field"])
