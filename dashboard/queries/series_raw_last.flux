// The newest raw value of one metric per selected device in the range: says which devices
// have data and whether the metric is a boolean there (series_raw_bool.flux) or a number
// (series_raw.flux). last() right after the filter runs in the storage engine.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), stop (time), metric (string),
//         s0, d0, s1, d1, ... (string: site and device of each selected device)
// ${devices} is replaced by dashboard.data.device_filter's predicate before the query runs.
from(bucket: _bucket)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => r._measurement == "telemetry" and r._field == _metric and (${devices}))
    |> last()
    |> keep(columns: ["site", "device", "_value"])
