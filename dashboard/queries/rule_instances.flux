// Each rule instance's last state (one point per transition), to list what is pending or firing.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string, ops), start (time)
from(bucket: _bucket)
    |> range(start: _start)
    |> filter(fn: (r) => r._measurement == "rule_state")
    |> last()
    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    |> keep(columns: ["_time", "rule", "site", "device", "state", "since_ns"])
    |> group()
