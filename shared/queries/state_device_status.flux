// The last value of every device_status field per device, from the state bucket (kept
// forever): state, reason, ts_ns, interval_s, model, model_version, firmware, lat, lon.
// There a status is stamped with its receipt time, so "last" is the last one received, and
// its own time is the field ts_ns. Field-wise last, so a last will that carries only state
// and reason keeps the model and coordinates of the device's last birth, however old.
// last() right after the filter runs in the storage engine; the result is regrouped by field
// (one table per field, one type each) so that the client reads a few tables.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string, the state bucket), start (time), stop (time)
from(bucket: _bucket)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => r._measurement == "device_status")
    |> last()
    |> keep(columns: ["_time", "site", "device", "_field", "_value"])
    |> group(columns: ["_field"])
