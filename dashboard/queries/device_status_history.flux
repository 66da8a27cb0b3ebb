// A device's births and deaths in the range, oldest first, from the state bucket: stamped
// with their receipt time (so in the order received; the will has no time of its own).
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), stop (time), site (string), device (string)
from(bucket: _bucket)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => r._measurement == "device_status")
    |> filter(fn: (r) => r.site == _site and r.device == _device)
    |> filter(fn: (r) => r._field == "state" or r._field == "reason")
    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    |> keep(columns: ["_time", "state", "reason"])
    |> sort(columns: ["_time"])
