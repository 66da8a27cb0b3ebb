// Each rule's last evaluation by the alerter: instances ok / pending / firing, and how long
// the whole evaluation cycle took.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string, ops), start (time)
from(bucket: _bucket)
    |> range(start: _start)
    |> filter(fn: (r) => r._measurement == "rule_eval")
    |> last()
    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    |> keep(columns: ["_time", "rule", "ok", "pending", "firing", "duration_ms"])
    |> group()
