// The model metrics of every device in windows (inference_ms, fps, detections,
// model_confidence): the per-device values the Models page compares, split by the version
// each device ran in each window. From the raw bucket (stat filter left out by the caller's
// choice of query) or a rollup bucket's means. One row per device and window, the four
// metrics side by side (pivot): a quarter of the rows to send.
// range |> filter |> aggregateWindow with only tag and field equalities in the filter, so
// InfluxDB runs the aggregation in the storage engine (ReadWindowAggregate).
// params (sent as Flux options by influxdb-client, names prefixed "_"): bucket (string), start (time), stop (time), every (duration)
from(bucket: _bucket)
    |> range(start: _start, stop: _stop)
    |> filter(fn: (r) => r._measurement == "telemetry" and (r._field == "inference_ms" or r._field == "fps" or r._field == "detections" or r._field == "model_confidence"))
    |> aggregateWindow(every: _every, fn: mean, createEmpty: false, timeSrc: "_start")
    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    |> map(fn: (r) => ({r with time_ns: int(v: r._time)}))
    |> drop(columns: ["_start", "_stop", "_time", "_measurement", "stat"])
