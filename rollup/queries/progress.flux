// Where each rollup level has got to: the newest `rollup_progress` point per level in the
// 1-minute bucket (its time is the end of the last window aggregated). last() right after the
// filter runs in the storage engine.
// params: bucket_1m (string), start (time)
from(bucket: _bucket_1m)
    |> range(start: _start)
    |> filter(fn: (r) => r._measurement == "rollup_progress" and r._field == "through_ns")
    |> last()
    |> keep(columns: ["level", "_value"])
