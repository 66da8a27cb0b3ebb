// Dead letters per rejection code in the range.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), stop (time)
from(bucket: _bucket)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => r._measurement == "dead_letter" and r._field == "reason")
    |> group(columns: ["code"])
    |> count()
    |> keep(columns: ["code", "_value"])
    |> group()
