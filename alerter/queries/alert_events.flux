// Every alert event in the range, one row per event (fields pivoted into columns), from the
// state bucket, where each also carries received_ns (its receipt time: the ingest's, or the
// alerter's for its own); `source` is "rule" for the alerter's events, absent for a device's.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), stop (time)
from(bucket: _bucket)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => r._measurement == "alert_event")
    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    // The exact time in ns: it is part of the alert's identity.
    |> map(fn: (r) => ({r with time_ns: int(v: r._time)}))
    |> keep(columns: ["_time", "time_ns", "site", "device", "type", "severity", "state", "message", "value", "received_ns", "source"])
