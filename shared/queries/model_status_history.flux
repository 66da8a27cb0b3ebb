// Every status's model fields, per device and time of receipt, from the state bucket (kept
// forever): the inventory (a device's last row) and the rollout history (where its version
// changed). Only births carry these fields, so the last wills drop out in the filter.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string, the state bucket), start (time), stop (time)
from(bucket: _bucket)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => r._measurement == "device_status" and (r._field == "model" or r._field == "model_version" or r._field == "model_sha256" or r._field == "labels"))
    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    |> map(fn: (r) => ({r with time_ns: int(v: r._time)}))
    |> keep(columns: ["time_ns", "site", "device", "model", "model_version", "model_sha256", "labels"])
