// Dirty (site, device, hour) markers the service has not yet aggregated: a marker
// (`rollup_dirty`, written by the ingest, field received_ns) is pending while the rollup
// service's done-record for the same device and hour (`rollup_done` in the 1-minute bucket)
// is missing or holds another received_ns (a later late message rewrote the marker).
// params: raw, bucket_1m (string), start, stop (time), limit (int)
markers =
    from(bucket: _raw)
        |> range(start: _start, stop: _stop)
        |> filter(fn: (r) => r._measurement == "rollup_dirty" and r._field == "received_ns")
done =
    from(bucket: _bucket_1m)
        |> range(start: _start, stop: _stop)
        |> filter(fn: (r) => r._measurement == "rollup_done" and r._field == "received_ns")
        |> set(key: "_field", value: "done_ns")

union(tables: [markers, done])
    |> keep(columns: ["_time", "_field", "_value", "site", "device"])
    |> group(columns: ["site", "device"])
    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    |> filter(fn: (r) => exists r.received_ns and (not exists r.done_ns or r.done_ns != r.received_ns))
    |> keep(columns: ["_time", "site", "device", "received_ns"])
    |> group()
    |> sort(columns: ["_time"])
    |> limit(n: _limit)
