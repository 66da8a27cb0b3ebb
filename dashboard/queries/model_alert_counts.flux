// How many alerts each device raised in the range (state bucket alert events), for the alert
// rate per device-day of each version.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string, the state bucket), start (time), stop (time)
from(bucket: _bucket)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => r._measurement == "alert_event" and r._field == "state")
    |> filter(fn: (r) => r._value == "raised")
    |> group(columns: ["site", "device"])
    |> count()
    |> keep(columns: ["site", "device", "_value"])
