// The first value of one metric of every device in the range, as a float: with metric_last
// over the same range, the rate of change (last - first) / (time between them). Two queries
// with first() / last() right after the filter, so both run in the storage engine.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), metric (string)
from(bucket: _bucket)
    |> range(start: _start)
    |> filter(fn: (r) => r._measurement == "telemetry" and r._field == _metric)
    |> first()
    |> toFloat()
    |> keep(columns: ["_time", "site", "device", "_field", "_value"])
    |> group()
