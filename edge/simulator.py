"""edge room: the fleet simulator, N sites x M devices, each device with its own edge agent.

Two modes:

- real time (demo): every device takes a reading each `interval_s` through its own
  `EdgeAgent` (own spool file, alert rules with hysteresis), so everything a real fleet does
  happens for real: births, last wills, store-and-forward replays, alerts raised and cleared.
  A demo script (on by default) injects faults early so that within a minute the fleet shows
  ONLINE, STALE and OFFLINE devices and open critical alerts; random faults follow at
  `fault_rate_per_hour` per device.
- fixed count (benchmark): `count` telemetry messages as fast as the broker acknowledges
  them, over one connection, no spool, no faults, with progress on stderr.

Connections, the choice made here: up to `REAL_CONNECTIONS_MAX_DEVICES` devices each get their
own MQTT connection with a real last will, so a crash is a real broker-published will. Above
that (2 cores, one process: hundreds of paho threads would measure the simulator, not the
system) the devices share one connection (`SharedLink`) and a crash is simulated by
publishing the exact last-will payload, retained, on the device's status topic. Either way
the receiving side sees the same bytes on the same topic.

Faults: overheat, model drift and camera loss change readings (devices.py) and the agents'
own rules raise and clear the alerts; clock skew moves the device clock 10 min ahead (the
ingest rejects those readings: dead letters); malformed messages go out on a side connection
(dead letters); a network outage drops the link (last will) while readings pile up in the
spool, replayed as batches when it returns; a crash drops the link and stops the device until
it restarts, reopening its spool; silence keeps the link but stops readings (STALE).

Deterministic for a seed: each device has its own `random.Random` (devices.py); time comes
from the injected clock.

Touches: the broker, SQLite spool files under `spool_dir`.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

from edge.agent import EdgeAgent
from edge.devices import (
    DeviceKind,
    DeviceSpec,
    DeviceState,
    Fault,
    FaultKind,
    alert_rules,
    build_fleet,
    device_rng,
    draw_fault,
    initial_state,
    malformed_payload,
    next_sample,
    with_fault,
)
from edge.rollout import RolloutPlan, plan_rollout
from edge.sites import fleet_sites
from edge.spool import Spool
from edge.transport import (
    Acked,
    Connected,
    Disconnected,
    LinkConfig,
    LinkEvent,
    Transport,
    TransportFactory,
)
from edgewatch.contract import topic_for
from edgewatch.encode import birth_body, encode_payload, offline_body, reading_body
from edgewatch.models import DeviceInfo
from edgewatch.settings import DEFAULT_EDGE_LINGER_SECONDS, DEFAULT_TOPIC_ROOT

REAL_CONNECTIONS_MAX_DEVICES = 50
LOOP_PERIOD_SECONDS = 0.1
PROGRESS_PERIOD_SECONDS = 0.5
BENCH_WINDOW_MESSAGES = 200
NS_PER_SECOND = 1_000_000_000

Connections = Literal["auto", "per-device", "shared"]
Mode = Literal["up", "silent", "crashed", "outage"]

# The demo script: (fault, first reading, readings it lasts). Assigned in order to devices
# taken one per site in turn, so every site gets some trouble. The silences are staggered so
# that some device is STALE (silent > 3 intervals, < 10) at any time from ~20 s on.
DEMO_SCRIPT: tuple[tuple[FaultKind, int, int], ...] = (
    (FaultKind.OVERHEAT, 1, 80),
    (FaultKind.CRASH, 3, 40),
    (FaultKind.SILENT, 2, 7),
    # Late enough that the camera has a baseline of normal confidence to drift away from.
    (FaultKind.MODEL_DRIFT, 24, 120),
    (FaultKind.OVERHEAT, 4, 60),
    (FaultKind.SILENT, 6, 7),
    (FaultKind.NETWORK_OUTAGE, 5, 6),
    (FaultKind.CAMERA_LOSS, 4, 10),
    (FaultKind.SILENT, 10, 7),
    (FaultKind.CRASH, 8, 30),
    (FaultKind.CLOCK_SKEW, 6, 3),
    (FaultKind.MALFORMED, 3, 1),
    (FaultKind.SILENT, 14, 7),
)
_NEEDS_CAMERA = (FaultKind.MODEL_DRIFT, FaultKind.CAMERA_LOSS)
_LINK_FAULTS = (FaultKind.CRASH, FaultKind.NETWORK_OUTAGE, FaultKind.SILENT)


@dataclass(frozen=True, slots=True)
class SimConfig:
    sites: int = 4
    devices_per_site: int = 5
    interval_s: float = 5.0
    seed: int = 1
    fault_rate_per_hour: float = 2.0
    demo_script: bool = True
    duration_s: float | None = None
    count: int | None = None
    connections: Connections = "auto"
    # The agents' linger and gzip (edge/agent.py); `count` runs publish without agents.
    linger_s: float = DEFAULT_EDGE_LINGER_SECONDS
    gzip: bool = False

    def __post_init__(self) -> None:
        if self.sites < 1 or self.devices_per_site < 1:
            raise ValueError("--sites and --devices must be at least 1")
        if not self.interval_s > 0:
            raise ValueError("the interval must be positive")
        if self.count is not None and self.count < 1:
            raise ValueError("--count must be at least 1")
        if self.fault_rate_per_hour < 0:
            raise ValueError("--fault-rate must be >= 0")

    @property
    def device_count(self) -> int:
        return self.sites * self.devices_per_site

    @property
    def shared_connection(self) -> bool:
        if self.connections == "auto":
            return self.device_count > REAL_CONNECTIONS_MAX_DEVICES
        return self.connections == "shared"


def demo_faults(specs: list[DeviceSpec]) -> dict[tuple[str, str], list[Fault]]:
    """The demo script assigned to devices, one site after the other (pure)."""
    by_site: dict[str, list[DeviceSpec]] = {}
    for spec in specs:
        by_site.setdefault(spec.site, []).append(spec)
    order: list[DeviceSpec] = []
    for index in range(max(len(v) for v in by_site.values())):
        order.extend(devices[index] for devices in by_site.values() if index < len(devices))
    assigned: dict[tuple[str, str], list[Fault]] = {}
    free = list(order)
    for kind, start, length in DEMO_SCRIPT:
        for spec in free:
            if kind in _NEEDS_CAMERA and spec.kind != DeviceKind.INFERENCE_BOX:
                continue
            assigned[(spec.site, spec.device)] = [Fault(kind, start, start + length)]
            free.remove(spec)
            break
    return assigned


@dataclass
class SimStats:
    readings: int = 0
    malformed: int = 0
    crashes: int = 0
    outages: int = 0
    silences: int = 0
    restarts: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    # What went out on the side connection, in order: the dead letters a run must produce.
    malformed_payloads: list[bytes] = field(default_factory=list)


@dataclass
class _Device:
    spec: DeviceSpec
    spool_path: Path
    rng: random.Random
    state: DeviceState
    script: list[Fault]
    agent: EdgeAgent | None = None
    spool: Spool | None = None
    version: str | None = None
    mode: Mode = "up"
    mode_until: int = 0
    next_due: float = 0.0


class SharedLink:
    """Many simulated devices over one MQTT connection (above the per-device limit).

    Each device gets a channel that behaves like its own `Transport`: connection events are
    fanned out, acknowledgements routed back by token. `abort()` publishes the device's last
    will payload itself, retained, since one connection cannot carry many wills.
    """

    def __init__(self, factory: TransportFactory, client_id: str) -> None:
        self._lock = threading.Lock()
        self._channels: set[_Channel] = set()
        self._owners: dict[int, _Channel] = {}
        # Acks that came back before publish() returned the token to us (paho's thread wins).
        self._early: dict[int, Acked] = {}
        self._connected = False
        self._transport = factory(
            LinkConfig(client_id=client_id, will_topic=None, will_payload=b"", sink=self._on_event)
        )
        self._transport.start()

    def _on_event(self, event: LinkEvent) -> None:
        with self._lock:
            if isinstance(event, Acked):
                owner = self._owners.pop(event.token, None)
                if owner is None:
                    self._early[event.token] = event
                    return
                targets = [owner]
            else:
                self._connected = isinstance(event, Connected)
                targets = list(self._channels)
        for channel in targets:
            channel.config.sink(event)

    def factory(self, config: LinkConfig) -> Transport:
        return _Channel(self, config)

    def close(self, timeout_s: float = 2.0) -> None:
        self._transport.stop(timeout_s=timeout_s)


class _Channel:
    def __init__(self, link: SharedLink, config: LinkConfig) -> None:
        self.link = link
        self.config = config

    def start(self) -> None:
        with self.link._lock:
            self.link._channels.add(self)
            connected = self.link._connected
        if connected:
            self.config.sink(Connected())

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, content_type: str | None = None
    ) -> int | None:
        token = self.link._transport.publish(
            topic, payload, retain=retain, content_type=content_type
        )
        if token is None:
            return None
        with self.link._lock:
            early = self.link._early.pop(token, None)
            if early is None:
                self.link._owners[token] = self
        if early is not None:
            self.config.sink(early)
        return token

    def wait_published(self, token: int, timeout_s: float) -> bool:
        return self.link._transport.wait_published(token, timeout_s)

    def _close(self) -> None:
        with self.link._lock:
            self.link._channels.discard(self)
            for token in [t for t, c in self.link._owners.items() if c is self]:
                del self.link._owners[token]

    def stop(self, *, timeout_s: float) -> None:
        self._close()

    def abort(self) -> None:
        self._close()
        if self.config.will_topic is not None:
            self.link._transport.publish(
                self.config.will_topic, self.config.will_payload, retain=True
            )


class FleetSimulator:
    """Runs a simulated fleet against a broker. Call `run()`; `stop()` from another thread."""

    def __init__(
        self,
        *,
        config: SimConfig,
        transport_factory: TransportFactory,
        spool_dir: Path,
        topic_root: str = DEFAULT_TOPIC_ROOT,
        clock_ns: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
        progress: TextIO | None = None,
        logger: logging.Logger | None = None,
        faults: Mapping[tuple[str, str], Sequence[Fault]] | None = None,
        spool_factory: Callable[[Path], Spool] = Spool,
    ) -> None:
        """`faults` are scripted on top of the demo script, per (site, device): a whole site
        cut off, say. `spool_factory` opens a device's spool (a chaos run records what each
        device spooled, its ground truth)."""
        self.config = config
        self._extra_faults = dict(faults or {})
        self._spool_factory = spool_factory
        self.stats = SimStats()
        self._factory = transport_factory
        self._spool_dir = spool_dir
        self._root = topic_root
        self._clock_ns = clock_ns
        self._monotonic = monotonic
        self._progress = progress
        self._log = logger or logging.getLogger(__name__)
        self._stop = threading.Event()
        self._shared: SharedLink | None = None
        self._side: Transport | None = None
        self.specs = build_fleet(fleet_sites(config.sites), config.devices_per_site, config.seed)
        self.sites = fleet_sites(config.sites)
        # The demo's model story (edge.rollout); its plan is the ground truth for tests.
        self.rollout: RolloutPlan = plan_rollout(
            self.specs, config.seed, enabled=config.demo_script
        )

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        if self.config.count is not None:
            self.run_count(self.config.count)
        else:
            self.run_realtime()

    # ------------------------------------------------------------------ real time

    def _agent_factory(self) -> TransportFactory:
        if self._shared is not None:
            return self._shared.factory
        return self._factory

    def _new_agent(self, dev: _Device) -> EdgeAgent:
        spec = dev.spec
        dev.spool = self._spool_factory(dev.spool_path)
        return EdgeAgent(
            site=spec.site,
            device=spec.device,
            spool=dev.spool,
            transport_factory=self._agent_factory(),
            topic_root=self._root,
            info=self._info(dev),
            alert_rules=alert_rules(spec.kind),
            linger_s=self.config.linger_s,
            gzip=self.config.gzip,
            clock_ns=self._clock_ns,
            monotonic=self._monotonic,
            logger=self._log.getChild(f"{spec.site}.{spec.device}"),
        )

    def _info(self, dev: _Device) -> DeviceInfo:
        spec = dev.spec
        running = self.rollout.running(spec, dev.state.step)
        dev.version = running.version if running else None
        return DeviceInfo(
            interval_s=self.config.interval_s,
            model=spec.model,
            model_version=running.version if running else spec.model_version,
            firmware=spec.firmware,
            lat=spec.lat,
            lon=spec.lon,
            model_sha256=running.sha256 if running else None,
            labels=self.rollout.labels(spec),
        )

    def _devices(self) -> list[_Device]:
        script = demo_faults(self.specs) if self.config.demo_script else {}
        devices = []
        for spec in self.specs:
            rng = device_rng(self.config.seed, spec.site, spec.device)
            devices.append(
                _Device(
                    spec=spec,
                    spool_path=self._spool_dir / f"{spec.site}.{spec.device}.sqlite",
                    rng=rng,
                    state=initial_state(spec, rng),
                    script=[
                        *script.get((spec.site, spec.device), []),
                        *self._extra_faults.get((spec.site, spec.device), []),
                    ],
                )
            )
        return devices

    def run_realtime(self) -> None:  # noqa: C901, PLR0912 - one pacing loop, read whole
        config = self.config
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        client_id = f"edgewatch-sim-{self._root}".replace("/", "_")
        if config.shared_connection:
            self._shared = SharedLink(self._factory, client_id)
        self._side = self._factory(
            LinkConfig(
                client_id=client_id + "-side", will_topic=None, will_payload=b"", sink=_ignore
            )
        )
        self._side.start()
        devices = self._devices()
        start = self._monotonic()
        for index, dev in enumerate(devices):
            dev.agent = self._new_agent(dev)
            dev.agent.start()
            # Spread the first readings over one interval: no thundering herd every tick.
            dev.next_due = start + config.interval_s * index / len(devices)
        self._log.info(
            "simulating %d sites x %d devices every %.1f s (%s connection%s, seed %d)",
            config.sites,
            config.devices_per_site,
            config.interval_s,
            "one shared" if self._shared else "one per device",
            "" if self._shared else "s",
            config.seed,
        )
        try:
            while not self._stop.is_set():
                now = self._monotonic()
                if config.duration_s is not None and now - start >= config.duration_s:
                    break
                for dev in devices:
                    if now >= dev.next_due:
                        self._tick(dev)
                        dev.next_due += config.interval_s
                        if dev.next_due < now:  # fell behind (machine busy): do not burst
                            dev.next_due = now + config.interval_s
                for dev in devices:
                    if dev.agent is not None:
                        dev.agent.pump()
                self._stop.wait(LOOP_PERIOD_SECONDS)
        finally:
            for dev in devices:
                if dev.agent is not None:
                    dev.agent.stop(timeout_s=2.0)
                if dev.spool is not None:
                    dev.spool.close()
            self._side.stop(timeout_s=1.0)
            if self._shared is not None:
                self._shared.close()
            self._log.info("simulation ended: %s", self.stats)

    def _tick(self, dev: _Device) -> None:
        rng = dev.rng
        step = dev.state.step
        starting = [f for f in dev.script if f.start_step == step]
        probability = self.config.fault_rate_per_hour * self.config.interval_s / 3600.0
        drawn = draw_fault(dev.spec, step, rng, probability) if probability > 0 else None
        if drawn is not None:
            starting.append(drawn)
        for fault in starting:
            self._begin(dev, fault)
        if dev.mode != "up" and step >= dev.mode_until:
            self._recover(dev)
        running = self.rollout.running(dev.spec, step)
        if running is not None and running.version != dev.version and dev.agent is not None:
            dev.agent.update_info(self._info(dev))
            self._log.info(
                "rollout %s/%s: %s %s",
                dev.spec.site,
                dev.spec.device,
                running.model,
                running.version,
            )
        now_ns = self._clock_ns()
        slowdown = running.slowdown if running else 1.0
        dev.state, sample = next_sample(dev.spec, dev.state, now_ns, rng, slowdown=slowdown)
        if dev.mode in ("up", "outage") and dev.agent is not None:
            dev.agent.record(sample.metrics, ts_ns=now_ns + sample.clock_offset_ns)
            self.stats.readings += 1

    def _begin(self, dev: _Device, fault: Fault) -> None:
        kind = fault.kind
        self.stats.faults[kind] = self.stats.faults.get(kind, 0) + 1
        name = f"{dev.spec.site}/{dev.spec.device}"
        if kind == FaultKind.MALFORMED:
            payload = malformed_payload(dev.rng)
            topic = topic_for(self._root, dev.spec.site, dev.spec.device, "telemetry")
            if self._side is None or self._side.publish(topic, payload) is None:
                self._log.warning("fault %s: malformed message not queued", name)
                return
            self.stats.malformed += 1
            self.stats.malformed_payloads.append(payload)
            self._log.info("fault %s: malformed message %r", name, payload[:40])
            return
        if kind in _LINK_FAULTS:
            if dev.mode != "up":
                return  # already down one way; faults do not stack on the link
            dev.mode_until = fault.end_step
            if kind == FaultKind.SILENT:
                dev.mode = "silent"
                self.stats.silences += 1
            elif kind == FaultKind.NETWORK_OUTAGE:
                dev.mode = "outage"
                self.stats.outages += 1
                if dev.agent is not None:
                    dev.agent.abort()
            else:
                dev.mode = "crashed"
                self.stats.crashes += 1
                if dev.agent is not None:
                    dev.agent.abort()
                if dev.spool is not None:
                    dev.spool.close()
                dev.agent = None
                dev.spool = None
            self._log.info(
                "fault %s: %s for %d readings", name, kind, fault.end_step - fault.start_step
            )
            return
        dev.state = with_fault(dev.state, fault)
        self._log.info(
            "fault %s: %s for %d readings", name, kind, fault.end_step - fault.start_step
        )

    def _recover(self, dev: _Device) -> None:
        name = f"{dev.spec.site}/{dev.spec.device}"
        if dev.mode == "crashed":
            dev.agent = self._new_agent(dev)
            dev.agent.start()
            self.stats.restarts += 1
            self._log.info("%s restarted: %d messages in its spool", name, dev.agent.spool_depth)
        elif dev.mode == "outage" and dev.agent is not None:
            dev.agent.start()
            self._log.info(
                "%s link back: replaying %d spooled messages", name, dev.agent.spool_depth
            )
        dev.mode = "up"

    # ------------------------------------------------------------------ fixed count

    def run_count(self, count: int) -> None:  # noqa: C901, PLR0915 - one send-and-drain loop
        """Publish `count` telemetry messages (one reading each) as fast as acknowledged."""
        events: queue.SimpleQueue[LinkEvent] = queue.SimpleQueue()
        link = self._factory(
            LinkConfig(
                client_id=f"edgewatch-bench-{self._root}".replace("/", "_"),
                will_topic=None,
                will_payload=b"",
                sink=events.put,
            )
        )
        link.start()
        devices = [
            (spec, device_rng(self.config.seed, spec.site, spec.device)) for spec in self.specs
        ]
        states = [initial_state(spec, rng) for spec, rng in devices]
        last_ts = [0] * len(devices)
        birth_info = DeviceInfo(interval_s=self.config.interval_s)
        topics = [topic_for(self._root, s.site, s.device, "telemetry") for s, _ in devices]
        try:
            self._wait_connected(events)
            for spec, _ in devices:
                birth = birth_body(birth_info, ts_ns=self._clock_ns())
                status = topic_for(self._root, spec.site, spec.device, "status")
                link.publish(status, encode_payload(birth), retain=True)
            sent = acked = 0
            in_flight: set[int] = set()
            start = last_report = self._monotonic()
            deadline = None if self.config.duration_s is None else start + self.config.duration_s
            while acked < count and not self._stop.is_set():
                if deadline is not None and self._monotonic() >= deadline:
                    break
                while sent < count and len(in_flight) < BENCH_WINDOW_MESSAGES:
                    index = sent % len(devices)
                    spec, rng = devices[index]
                    # Distinct ts per device: the ts is a reading's identity in the store.
                    ts_ns = max(self._clock_ns(), last_ts[index] + 1)
                    last_ts[index] = ts_ns
                    states[index], sample = next_sample(spec, states[index], ts_ns, rng)
                    body = reading_body(sample.metrics, ts_ns=ts_ns, seq=states[index].step)
                    token = link.publish(topics[index], encode_payload(body))
                    if token is None:
                        break
                    in_flight.add(token)
                    sent += 1
                try:
                    event = events.get(timeout=LOOP_PERIOD_SECONDS)
                except queue.Empty:
                    event = None
                while event is not None:
                    if isinstance(event, Acked) and event.token in in_flight:
                        in_flight.discard(event.token)
                        acked += 1
                    try:
                        event = events.get_nowait()
                    except queue.Empty:
                        event = None
                now = self._monotonic()
                if now - last_report >= PROGRESS_PERIOD_SECONDS:
                    last_report = now
                    self._report(sent, acked, count, now - start)
            elapsed = self._monotonic() - start
            self._report(sent, acked, count, elapsed, final=True)
            self.stats.readings = acked
            for spec, _ in devices:
                status = topic_for(self._root, spec.site, spec.device, "status")
                body = offline_body(ts_ns=self._clock_ns())
                link.publish(status, encode_payload(body), retain=True)
        finally:
            link.stop(timeout_s=2.0)

    def _wait_connected(self, events: queue.SimpleQueue[LinkEvent]) -> None:
        while not self._stop.is_set():
            try:
                event = events.get(timeout=LOOP_PERIOD_SECONDS)
            except queue.Empty:
                continue
            if isinstance(event, Connected):
                return
            if isinstance(event, Disconnected):
                self._log.warning("bench link: %s; retrying", event.reason)

    def _report(
        self, sent: int, acked: int, count: int, elapsed_s: float, *, final: bool = False
    ) -> None:
        if self._progress is None:
            return
        rate = acked / elapsed_s if elapsed_s > 0 else 0.0
        end = "\n" if final else "\r"
        self._progress.write(
            f"sent {sent}/{count}  acknowledged {acked}  {rate:,.0f} msg/s  {elapsed_s:.1f} s{end}"
        )
        self._progress.flush()


def _ignore(event: LinkEvent) -> None:
    """The side connection for malformed messages needs no events."""
