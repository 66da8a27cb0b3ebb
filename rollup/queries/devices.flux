// The device names that have telemetry in [start, stop): read from the index (ReadTagValues),
// not from the points. A name used at several sites is one entry: the rollup queries select
// by device name, which covers each of its sites.
// params: raw (string), start, stop (time)
import "influxdata/influxdb/schema"

schema.measurementTagValues(
    bucket: _raw,
    measurement: "telemetry",
    tag: "device",
    start: _start,
    stop: _stop,
)
