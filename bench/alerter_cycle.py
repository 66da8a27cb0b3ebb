"""bench room: one alerter evaluation cycle for 1,000 devices and 20 rules.

`python -m bench.alerter_cycle [--devices N] [--repeat R]` times, on the same synthetic
fleet in the same run: the health model over the fleet (the peer: what every dashboard
refresh computes), rule evaluation (`evaluate`), and notification planning
(`plan_notifications`) over the open alerts. Prints medians and ratios to the peer.

`--influx` times the whole cycle instead (`Alerter.cycle()`: every Flux read, the pure steps,
the writes) against a fresh influxd on loopback seeded with the fleet, and as its peer the
fleet's state read alone (`AlerterStore.fleet_state`: the state bucket's status and last-seen
reads, the heartbeat and retirements, the same reads and parsing as the dashboard's fleet
load).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from alerter.evaluate import DeviceView, FleetInput, evaluate
from alerter.notify import plan_notifications
from edgewatch.alerts import StoredAlertEvent, fold_alerts
from edgewatch.health import DeviceSnapshot, device_health, fleet_health
from edgewatch.rules import parse_rules

NS = 1_000_000_000
METRICS = ("cpu_temp_c", "gpu_temp_c", "inference_ms", "fps", "confidence", "power_w")


def rules_text(count: int) -> str:
    """The three built-ins plus `count - 3` user rules (threshold, every fourth a rate)."""
    lines = ["rules:"]
    for i in range(count - 3):
        metric = METRICS[i % len(METRICS)]
        if i % 4 == 3:
            lines.append(
                f"  - {{name: rule_{i}, kind: rate, metric: {metric}, threshold: 0.5, window: 300}}"
            )
        else:
            lines.append(
                f"  - {{name: rule_{i}, metric: {metric}, threshold: {60 + i}, "
                f"clear_threshold: {55 + i}, for: 60, keep_firing_for: 30, "
                f'match: {{site: ["site-{i % 7}*", "site-1*"]}}}}'
            )
    return "\n".join(lines) + "\n"


def synthetic_fleet(
    devices: int, now_ns: int, rng: random.Random
) -> tuple[FleetInput, list[DeviceSnapshot]]:
    snapshots = []
    views = []
    rates = {}
    for i in range(devices):
        site, device = f"site-{i % 50}", f"cam-{i}"
        silent_s = rng.choice([1, 1, 1, 1, 40, 200])
        snap = DeviceSnapshot(
            site=site,
            device=device,
            last_telemetry_ns=now_ns - silent_s * NS,
            status_state="online",
            status_ns=now_ns - 3600 * NS,
            interval_s=10.0,
        )
        snapshots.append(snap)
        metrics = {m: rng.uniform(20, 90) for m in METRICS}
        views.append(
            DeviceView(
                health=device_health(snap, now_ns),
                model="yolo-v8n",
                interval_s=10.0,
                metrics=metrics,
            )
        )
        for m in METRICS:
            rates[(site, device, m, 300.0)] = rng.uniform(-1, 1)
    return FleetInput(devices=tuple(views), ingest_silent=False, rates=rates), snapshots


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def seed_lines(devices: int, now_ns: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """Raw: 10 readings of 6 metrics per device and an ingest heartbeat. State: each device's
    status, last-seen and shadow, as the ingest writes them (edgewatch.schema.state_lines)."""
    from edgewatch.models import Reading, StatusEvent, Telemetry  # noqa: PLC0415
    from edgewatch.schema import ingest_stats_line, line, state_lines  # noqa: PLC0415

    raw, state = [], []
    for i in range(devices):
        tags = {"site": f"site-{i % 50}", "device": f"cam-{i}"}
        born_ns = now_ns - 3600 * NS
        birth = StatusEvent(
            site=tags["site"], device=tags["device"], ts_ns=born_ns, state="online",
            interval_s=10.0, model="yolo-v8n",
        )  # fmt: skip
        state.extend(state_lines(birth, born_ns, writer="ingest-1"))
        silent_s = rng.choice([1, 1, 1, 1, 40, 200])
        for k in range(10):
            ts = now_ns - (silent_s + 10 * k) * NS
            raw.append(line("telemetry", tags, {m: rng.uniform(20, 90) for m in METRICS}, ts))
        newest = now_ns - silent_s * NS
        reading = Telemetry(tags["site"], tags["device"], (Reading(newest, {"x": 1.0}),))
        state.extend(state_lines(reading, newest, writer="ingest-1"))
    raw.append(ingest_stats_line("ingest-1", {"interval_s": 5.0, "received": 1}, now_ns - NS))
    return raw, state


def influx_main(args: argparse.Namespace) -> None:
    """The whole cycle against a real influxd, and the dashboard's fleet load as the peer."""
    from influxdb_client.client.write_api import SYNCHRONOUS  # noqa: PLC0415

    from alerter.delivery import Outcome  # noqa: PLC0415
    from alerter.service import Alerter, DeliveryPolicy  # noqa: PLC0415
    from alerter.store import AlerterStore, StoreConfig, make_client  # noqa: PLC0415
    from edgewatch.settings import load_settings  # noqa: PLC0415
    from stack.ephemeral import cached_influxd, running_influxdb  # noqa: PLC0415

    class NullSender:
        def send(self, url: str, *, key: str, title: str, body: str, resolved: bool) -> Outcome:
            return Outcome(True)

    with running_influxdb(cached_influxd()) as fx:
        settings = load_settings(
            influxdb_url=fx.url,
            influxdb_org=fx.org,
            influxdb_token=fx.admin_token,
            influxdb_bucket=fx.bucket,
            influxdb_bucket_ops=fx.bucket_ops,
            influxdb_bucket_state=fx.bucket_state,
        )
        now = time.time_ns()
        raw, state = seed_lines(args.devices, now, random.Random(7))
        config = StoreConfig.from_settings(settings)
        client = make_client(config)
        with client.write_api(write_options=SYNCHRONOUS) as writer:
            for bucket, lines in ((fx.bucket, raw), (fx.bucket_state, state)):
                for start in range(0, len(lines), 5000):
                    writer.write(bucket=bucket, record=lines[start : start + 5000])
        rules = parse_rules(rules_text(args.rules))
        alerter = Alerter(
            store=AlerterStore(client=client, config=config),
            sender=NullSender(),
            rules=rules,
            urls={"default": ("json://127.0.0.1:9/null",)},
            policy=DeliveryPolicy(),
        )
        for _ in range(3):  # warm: the first cycles record the new alerts and notifications
            alerter.cycle()
        cycle_ms = median_ms(alerter.cycle, args.repeat)
        store = AlerterStore(client=client, config=config)
        fleet_ms = median_ms(lambda: store.fleet_state(datetime.now(tz=UTC)), args.repeat)
        client.close()  # type: ignore[no-untyped-call]
    print(
        f"{args.devices} devices, {len(rules.rule_names())} rules, real influxd on loopback; "
        f"median of {args.repeat}"
    )
    print(f"  fleet state read (peer)     {fleet_ms:8.1f} ms  1.0x")
    print(f"  alerter cycle (all I/O)     {cycle_ms:8.1f} ms  {cycle_ms / fleet_ms:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rules", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--influx", action="store_true", help="the whole cycle, real influxd")
    parser.add_argument("--verbose", action="store_true", help="with --influx: each query's time")
    args = parser.parse_args()
    if args.influx:
        if args.verbose:
            import logging  # noqa: PLC0415

            logging.basicConfig(level=logging.WARNING)
            logging.getLogger("alerter.store").setLevel(logging.DEBUG)
        influx_main(args)
        return
    rng = random.Random(7)
    now = 1_800_000_000 * NS
    config = parse_rules(rules_text(args.rules))
    fleet, snapshots = synthetic_fleet(args.devices, now, rng)
    # A warm state: the previous cycle's, so pending timers and firing alerts exist.
    previous = evaluate(config, fleet, {}, now - 120 * NS).states
    warm = evaluate(config, fleet, previous, now - 60 * NS)
    events = [
        StoredAlertEvent(e.site, e.device, e.type, e.ts_ns, e.severity, e.state, e.message)
        for e in warm.events
    ]
    records = fold_alerts(events)

    health_ms = median_ms(
        lambda: fleet_health(
            snapshots, now, ingest_last_report_ns=now - NS, ingest_report_interval_s=5.0
        ),
        args.repeat,
    )
    evaluate_ms = median_ms(lambda: evaluate(config, fleet, warm.states, now), args.repeat)
    plan_ms = median_ms(
        lambda: plan_notifications(
            records, config=config, targets={"default": 2}, log={}, silences=[], now_ns=now
        ),
        args.repeat,
    )
    instances = len(warm.states)
    print(
        f"{args.devices} devices, {len(config.rule_names())} rules, {instances} rule instances, "
        f"{len(records)} open alerts; median of {args.repeat}"
    )
    print(f"  health model (peer)       {health_ms:8.1f} ms  1.0x")
    print(f"  evaluate (all rules)      {evaluate_ms:8.1f} ms  {evaluate_ms / health_ms:.1f}x")
    print(f"  plan notifications        {plan_ms:8.1f} ms  {plan_ms / health_ms:.1f}x")
    total = evaluate_ms + plan_ms
    print(f"  cycle (pure part)         {total:8.1f} ms  {total / health_ms:.1f}x")


if __name__ == "__main__":
    main()
