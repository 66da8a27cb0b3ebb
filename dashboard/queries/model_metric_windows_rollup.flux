// As model_metric_windows, from a rollup bucket: the means (tag stat), re-windowed by mean.
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), stop (time), every (duration)
from(bucket: _bucket)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => r._measurement == "telemetry" and (r._field == "inference_ms" or r._field == "fps" or r._field == "detections" or r._field == "model_confidence") and r.stat == "mean")
    |> aggregateWindow(every: _every, fn: mean, createEmpty: false, timeSrc: "_start")
    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    |> map(fn: (r) => ({r with time_ns: int(v: r._time)}))
    |> drop(columns: ["_start", "_stop", "_time", "_measurement", "stat"])
