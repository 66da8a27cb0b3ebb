// Every alert event in the range, one row per event (fields pivoted into columns). Read from
// the state bucket, where each event also carries received_ns (the ingest's receipt time).
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), stop (time)
from(bucket: _bucket)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => r._measurement == "alert_event")
    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    // The exact time in ns: it is part of the alert's identity, and the client's datetimes
    // stop at microseconds.
    |> map(fn: (r) => ({r with time_ns: int(v: r._time)}))
    |> keep(columns: ["_time", "time_ns", "site", "device", "type", "severity", "state", "message", "value", "received_ns"])
