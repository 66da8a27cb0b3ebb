// Each rule instance's last stored state (the alerter writes one point per transition).
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string, ops), start (time)
from(bucket: _bucket)
    |> range(start: _start)
    |> filter(fn: (r) => r._measurement == "rule_state")
    |> last()
    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    |> keep(columns: ["rule", "site", "device", "state", "since_ns", "last_true_ns"])
    |> group()
