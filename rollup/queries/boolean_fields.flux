// Which telemetry fields are booleans in [start, stop): the newest value of each field over
// all series, grouped by field (a pushed-down group aggregate reads one point per series);
// a field has one type per shard, as InfluxDB refuses a second type.
// params: raw (string), start, stop (time)
from(bucket: _raw)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => r._measurement == "telemetry")
    |> group(columns: ["_field"])
    |> last()
    |> keep(columns: ["_field", "_value"])
