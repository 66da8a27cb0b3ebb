// Every operator action in the ops bucket, whatever its measurement (alert_action and any
// other *_action kind): one row per action with its tags and fields side by side.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), stop (time)
import "strings"

from(bucket: _bucket)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => strings.hasSuffix(v: r._measurement, suffix: "_action"))
    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    |> group()
    |> sort(columns: ["_time"])
