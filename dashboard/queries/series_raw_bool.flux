// One boolean metric (such as camera_ok) of several devices from raw data, as 0/1: the mean
// per window, i.e. the share of true readings. The storage engine cannot aggregate booleans,
// so this is read once (device and field predicates still pushed down) and averaged by Flux;
// min and max of 0/1 follow from the mean and are derived by FleetStore.series.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), stop (time), every (duration), metric (string),
//         s0, d0, s1, d1, ... (string: site and device of each selected device)
// ${devices} is replaced by dashboard.data.device_filter's predicate before the query runs.
from(bucket: _bucket)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => r._measurement == "telemetry" and r._field == _metric and (${devices}))
    |> toFloat()
    |> aggregateWindow(every: _every, fn: mean, createEmpty: false, timeSrc: "_start")
    |> keep(columns: ["_time", "_value", "site", "device"])
