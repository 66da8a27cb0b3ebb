"""Drain-mode bench: the batch workload holds the single workload's readings, and the ratios."""

from __future__ import annotations

import json

from bench.drain import generate_batches, warmup_batch
from bench.procstat import ProcSample, RunCpu
from bench.report import drain_ratios
from bench.telegraf import TelegrafConfig, render_config
from bench.workload import generate


def _readings(messages: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
    out = []
    for topic, payload in messages:
        body = json.loads(payload)
        for one in body.get("batch", [body]):
            out.append((topic, json.dumps(one, sort_keys=True)))
    return sorted(out)


def test_batches_carry_the_same_readings_as_single_messages() -> None:
    singles = [(m.topic, m.payload) for m in generate(root="r", count=300, devices=3, now=10**9)]
    batches = list(generate_batches(root="r", readings=300, devices=3, now=10**9))
    assert len(batches) == 6
    assert all(len(json.loads(m.payload)["batch"]) == 50 for m in batches)
    assert len(_readings([(m.topic, m.payload) for m in batches])) == 300

    # Same topics, times and sequence numbers per device (values come from one random stream
    # in a different order, so they are not compared).
    def keys(msgs: list[tuple[str, bytes]]) -> list[tuple[str, int, int]]:
        return sorted(
            (t, int(r["ts"]), int(r["seq"]))
            for t, p in msgs
            for r in json.loads(p).get("batch", [json.loads(p)])
        )

    assert keys(singles) == keys([(m.topic, m.payload) for m in batches])


def test_warmup_batch_is_a_batch_of_one() -> None:
    body = json.loads(warmup_batch("r", 1.5e9).payload)
    assert len(body["batch"]) == 1


def test_telegraf_batch_config_parses_the_array() -> None:
    def config(*, batch: bool) -> TelegrafConfig:
        return TelegrafConfig(
            mqtt_host="h",
            mqtt_port=1,
            topic_root="r",
            influxdb_url="u",
            token="t",
            org="o",
            bucket="b",
            batch=batch,
        )

    batch = render_config(config(batch=True))
    single = render_config(config(batch=False))
    assert 'path = "batch"' in batch and 'timestamp_key = "ts"' in batch
    assert 'path = "metrics"' in single and 'path = "batch"' not in single


def test_drain_ratios_take_the_better_ingest_setup() -> None:
    def run(rate: float) -> dict[str, object]:
        return {"ok": True, "readings_per_s": rate, "fields_per_s": rate * 10}

    drain = {
        "edgewatch": {"single": run(100.0), "batch": run(400.0)},
        "edgewatch_x2": {"single": run(150.0), "batch": {"ok": False}},
        "telegraf": {"single": run(300.0), "batch": run(200.0)},
        "database": {"ok": True, "fields_per_s": 8000.0},
    }
    r = drain_ratios(drain)
    assert r["drain_single_vs_telegraf"] == 0.5
    assert r["drain_batch_vs_telegraf"] == 2.0
    assert r["drain_batch_vs_db_ceiling"] == 0.5
    assert drain_ratios({}) == {}


def test_a_runs_cpu_is_whole_or_absent() -> None:
    def sample(pid: int, cpu: float) -> ProcSample:
        return ProcSample(pid=pid, cpu_seconds=cpu, peak_rss_bytes=1)

    run = RunCpu(pids=(1, 2), influxd_pid=3, before=[sample(1, 1.0), sample(2, 2.0)],
                 influxd_before=sample(3, 5.0))  # fmt: skip
    run.after, run.influxd_after = [sample(1, 1.5), sample(2, 3.0)], sample(3, 6.0)
    assert run.fields(count=1000, unit="reading") == {
        "cpu_seconds": 1.5,
        "cpu_us_per_reading": 1500.0,
        "influxd_cpu_seconds": 1.0,
    }
    run.after = [sample(1, 1.5), None]  # a consumer gone by the end: no figure, not half of one
    assert run.fields(count=1000, unit="reading")["cpu_seconds"] is None
