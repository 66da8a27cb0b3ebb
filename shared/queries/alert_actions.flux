// Every operator action on alerts in the range, one row per action.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string, the ops bucket), start (time), stop (time)
from(bucket: _bucket)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => r._measurement == "alert_action")
    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    |> map(fn: (r) => ({r with time_ns: int(v: r._time)}))
    |> keep(columns: ["_time", "time_ns", "site", "device", "type", "alert_id", "action", "user", "note", "snooze_until_ns"])
