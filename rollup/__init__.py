"""rollup room: the service that fills the 1-minute and 1-hour rollup buckets."""
