// The latest value of one metric of every device, as a float (a boolean is 1.0 or 0.0).
// One query per metric: an equality filter on _field followed by last() runs in the storage
// engine, where a set membership test (contains) would read every series in the range.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), metric (string)
from(bucket: _bucket)
    |> range(start: _start)
    |> filter(fn: (r) => r._measurement == "telemetry" and r._field == _metric)
    |> last()
    |> toFloat()
    |> keep(columns: ["_time", "site", "device", "_field", "_value"])
    |> group()
