"""The edge agent against a fake link: births, acks before removal, batched in-order replay."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from edge.agent import EdgeAgent
from edge.filters import AlertRule, DeadbandConfig
from edge.spool import Spool
from edge.transport import Acked, Connected, Disconnected, LinkConfig, Transport
from edgewatch.contract import MAX_METRICS_PER_READING, decode_message
from edgewatch.encode import LAST_WILL_BODY
from edgewatch.models import DeviceInfo, Rejected, Telemetry

NS = 1_000_000_000
T0 = 1_767_268_800 * NS


class FakeLink:
    """A broker link the test drives: nothing is acknowledged until the test says so."""

    def __init__(self, config: LinkConfig) -> None:
        self.config = config
        self.published: list[tuple[int, str, bytes, bool]] = []
        self.content_types: list[str | None] = []
        self.next_token = 1
        self.state = "new"
        self.answered = 0

    def start(self) -> None:
        self.state = "started"

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, content_type: str | None = None
    ) -> int | None:
        token = self.next_token
        self.next_token += 1
        self.published.append((token, topic, payload, retain))
        self.content_types.append(content_type)
        return token

    def wait_published(self, token: int, timeout_s: float) -> bool:
        return True

    def stop(self, *, timeout_s: float) -> None:
        self.state = "stopped"

    def abort(self) -> None:
        self.state = "aborted"

    # test controls
    def connect(self) -> None:
        self.config.sink(Connected())

    def drop(self) -> None:
        self.config.sink(Disconnected("network"))

    def ack_all(self) -> None:
        for token, *_ in self.published:
            self.config.sink(Acked(token, ok=True))

    def ack_new(self, *, code: int = 0) -> None:
        """Answer every publish not answered yet, with this PUBACK reason code."""
        for token, *_ in self.published[self.answered :]:
            self.config.sink(Acked(token, ok=code < 0x80, code=code))
        self.answered = len(self.published)

    def telemetry(self) -> list[dict[str, Any]]:
        out = []
        for _, topic, payload, _ in self.published:
            if topic.endswith("/telemetry"):
                body = json.loads(payload)
                out.extend(body.get("batch", [body]))
        return out


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        self.now += NS
        return self.now


def _agent(
    tmp_path: Path,
    links: list[FakeLink],
    clock: Clock | None = None,
    *,
    linger_s: float = 0.0,
    **kwargs: Any,
) -> tuple[EdgeAgent, Spool]:
    # Without linger by default: these tests are about sending and acknowledging; the linger
    # has tests of its own.
    spool = Spool(tmp_path / "spool.sqlite")

    def factory(config: LinkConfig) -> Transport:
        links.append(FakeLink(config))
        return links[-1]

    agent = EdgeAgent(
        site="munich",
        device="cam-01",
        spool=spool,
        transport_factory=factory,
        topic_root="t",
        info=DeviceInfo(interval_s=5.0, model="yolo-v8n", lat=48.1, lon=11.6),
        clock_ns=clock or Clock(),
        linger_s=linger_s,
        **kwargs,
    )
    return agent, spool


def test_birth_will_and_single_readings(tmp_path: Path) -> None:
    links: list[FakeLink] = []
    agent, spool = _agent(tmp_path, links)
    agent.start()
    link = links[0]
    assert link.config.will_topic == "t/munich/cam-01/status"
    assert json.loads(link.config.will_payload) == LAST_WILL_BODY
    link.connect()
    agent.pump()
    _token, topic, payload, retain = link.published[0]
    birth = json.loads(payload)
    assert (topic, retain, birth["state"], birth["interval_s"]) == (
        "t/munich/cam-01/status",
        True,
        "online",
        5.0,
    )
    assert birth["model"] == "yolo-v8n" and "firmware" not in birth
    agent.record({"cpu_temp_c": 61.5})
    agent.pump()
    _, topic, payload, _ = link.published[1]
    decoded = decode_message(topic, payload, T0 + 10 * NS, "t")
    assert decoded.kind == "telemetry"  # the contract's own decoder accepts it
    assert spool.depth == 1  # not acknowledged yet
    link.ack_all()
    agent.pump()
    assert spool.depth == 0
    agent.stop()
    last = json.loads(link.published[-1][2])
    assert (last["state"], last["reason"]) == ("offline", "shutdown")
    assert link.state == "stopped"


def test_offline_readings_are_replayed_in_order_as_batches_after_a_restart(
    tmp_path: Path,
) -> None:
    links: list[FakeLink] = []
    clock = Clock()
    agent, spool = _agent(tmp_path, links, clock)
    agent.start()
    agent.pump()  # never connected: the broker is down
    for i in range(2500):
        agent.record({"v": float(i)})
    assert links[0].published == []
    agent.stop(timeout_s=0)
    spool.close()

    agent, spool = _agent(tmp_path, links, clock)  # the agent restarts, still offline, takes more
    agent.start()
    for i in range(2500, 2600):
        agent.record({"v": float(i)})
    link = links[1]
    link.connect()
    for _ in range(20):
        agent.pump()
        link.ack_all()
    agent.pump()
    readings = link.telemetry()
    assert [r["metrics"]["v"] for r in readings] == [float(i) for i in range(2600)]
    assert [r["seq"] for r in readings] == list(range(2600))
    assert len({r["ts"] for r in readings}) == 2600
    sizes = [
        len(json.loads(p)["batch"]) for _, t, p, _ in link.published if t.endswith("telemetry")
    ]
    print(f"replay of 2600 readings: {len(sizes)} messages, sizes {sizes}")
    assert max(sizes) <= 1000
    assert all(len(p) < 200 * 1024 for _, _, p, _ in link.published)
    assert spool.depth == 0


def test_unacknowledged_messages_are_resent_by_a_new_link_not_lost(tmp_path: Path) -> None:
    links: list[FakeLink] = []
    agent, spool = _agent(tmp_path, links)
    agent.start()
    links[0].connect()
    agent.pump()
    agent.record({"v": 1.0})
    agent.pump()
    agent.abort()  # crash before the PUBACK
    assert spool.depth == 1
    links[0].ack_all()  # a late ack from the dead link must not remove anything
    agent.start()
    agent.pump()
    assert spool.depth == 1
    links[1].connect()
    agent.pump()
    assert [r["metrics"]["v"] for r in links[1].telemetry()] == [1.0]


def test_filters_and_rules_in_the_agent(tmp_path: Path) -> None:
    links: list[FakeLink] = []
    agent, _spool = _agent(
        tmp_path,
        links,
        deadband_config=DeadbandConfig(bands={"gpu_temp_c": 1.0}, heartbeat_s=3600),
        alert_rules=(AlertRule("overheat", "critical", "gpu_temp_c", 85.0, 5.0),),
    )
    agent.start()
    links[0].connect()
    values = [80.0, 80.2, 80.4, 86.0, 86.3, 84.0, 86.0, 79.0, 79.2]
    for value in values:
        agent.record({"gpu_temp_c": value})
        agent.pump()
        links[0].ack_all()
    sent = [r["metrics"]["gpu_temp_c"] for r in links[0].telemetry()]
    alerts = [json.loads(p) for _, t, p, _ in links[0].published if t.endswith("/alert")]
    assert sent == [80.0, 86.0, 84.0, 86.0, 79.0]
    assert [(a["type"], a["severity"], a["state"]) for a in alerts] == [
        ("overheat", "critical", "raised"),
        ("overheat", "critical", "cleared"),
    ]
    assert agent.stats.filtered_out == 4


def test_drops_are_reported_as_metrics(tmp_path: Path) -> None:
    links: list[FakeLink] = []
    spool = Spool(tmp_path / "small.sqlite", max_messages=5)
    agent = EdgeAgent(
        site="s",
        device="d",
        spool=spool,
        transport_factory=lambda c: links.append(FakeLink(c)) or links[-1],
        clock_ns=Clock(),
    )
    for i in range(8):
        agent.record({"v": float(i)})
    last = spool.all_items()[-1].body["metrics"]
    assert last["spool_dropped"] == 2.0 and last["spool_depth"] == 5.0


def test_readings_without_ts_never_share_a_timestamp_across_restarts(tmp_path: Path) -> None:
    links: list[FakeLink] = []
    frozen = lambda: T0  # noqa: E731 - a clock that does not move: a burst within one tick
    agent, spool = _agent(tmp_path, links, clock=frozen)  # type: ignore[arg-type]
    for i in range(3000):
        agent.record({"v": float(i)})
    spool.close()
    agent, spool = _agent(tmp_path, links, clock=frozen)  # type: ignore[arg-type]
    for i in range(3000, 3100):
        agent.record({"v": float(i)})
    bodies = [item.body for item in spool.all_items()]
    stamps = [
        decode_message("t/s/d/telemetry", item.text.encode(), T0, "t") for item in spool.all_items()
    ]
    ts_ns = [m.readings[0].ts_ns for m in stamps if isinstance(m, Telemetry)]
    assert len(ts_ns) == 3100 and ts_ns == sorted(set(ts_ns))
    assert ts_ns[0] == T0 and ts_ns[-1] == T0 + 3099  # nanoseconds apart, strictly increasing
    assert [b["seq"] for b in bodies] == list(range(3100))


class Monotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _connected(
    tmp_path: Path, links: list[FakeLink], **kwargs: Any
) -> tuple[EdgeAgent, Spool, FakeLink]:
    """An agent whose link is up and whose birth was acknowledged."""
    agent, spool = _agent(tmp_path, links, **kwargs)
    agent.start()
    link = links[0]
    link.connect()
    agent.pump()
    link.ack_new()
    return agent, spool, link


def test_a_refusal_that_is_not_the_message_fault_keeps_it_and_retries_with_backoff(
    tmp_path: Path,
) -> None:
    monotonic = Monotonic()
    agent, spool, link = _connected(tmp_path, [], monotonic=monotonic)
    agent.record({"v": 1.0})
    agent.pump()
    link.ack_new(code=0x87)  # Not authorized: an ACL change, not the reading's fault
    agent.pump()
    assert spool.depth == 1 and agent.stats.retried == 1
    published = len(link.published)
    agent.pump()
    assert len(link.published) == published  # backing off: 1 s after the first refusal
    monotonic.now += 1.0
    agent.pump()
    assert len(link.published) == published + 1
    link.ack_new(code=0x97)  # Quota exceeded: the backoff doubles
    agent.pump()
    monotonic.now += 1.0
    agent.pump()
    assert len(link.published) == published + 1
    monotonic.now += 1.0
    agent.pump()
    assert len(link.published) == published + 2
    link.ack_new()  # fixed: delivered, and only now deleted
    agent.pump()
    assert spool.depth == 0 and agent.stats.retried == 2 and agent.stats.acked == 1
    assert [r["metrics"]["v"] for r in link.telemetry()] == [1.0, 1.0, 1.0]
    agent.record({"v": 2.0})
    assert spool.all_items()[-1].body["metrics"]["publish_retries"] == 2.0


def test_refusals_of_one_round_back_off_once(tmp_path: Path) -> None:
    monotonic = Monotonic()
    agent, spool, link = _connected(tmp_path, [], monotonic=monotonic)
    agent.alert("a", "info")  # alerts go one to a message: several messages in flight
    agent.alert("b", "info")
    agent.alert("c", "info")
    agent.pump()
    link.ack_new(code=0x87)  # all three refused in one round
    agent.pump()
    assert spool.depth == 3 and agent.stats.retried == 3
    monotonic.now += 1.0  # one round, so the first backoff (1 s), not the third (4 s)
    agent.pump()
    assert [json.loads(p)["type"] for _, t, p, _ in link.published[-3:]] == ["a", "b", "c"]


def test_a_refusal_that_is_the_message_fault_drops_and_counts_it(tmp_path: Path) -> None:
    agent, spool, link = _connected(tmp_path, [])
    agent.record({"v": 1.0})
    agent.pump()
    link.ack_new(code=0x99)  # Payload format invalid: sending it again would not help
    agent.pump()
    assert spool.depth == 0 and spool.refused_total == 1 and agent.stats.refused == 1
    agent.record({"v": 2.0})
    assert spool.all_items()[-1].body["metrics"]["publish_refused"] == 1.0


def test_an_alert_raised_before_a_restart_is_cleared_after_it(tmp_path: Path) -> None:
    links: list[FakeLink] = []
    rules = (AlertRule("overheat", "critical", "gpu_temp_c", 85.0, 5.0),)
    agent, spool = _agent(tmp_path, links, alert_rules=rules)
    agent.record({"gpu_temp_c": 90.0})
    spool.close()
    agent, spool = _agent(tmp_path, links, alert_rules=rules)
    agent.record({"gpu_temp_c": 70.0})
    alerts = [item.body for item in spool.all_items() if item.kind == "alert"]
    assert [(a["type"], a["state"]) for a in alerts] == [
        ("overheat", "raised"),
        ("overheat", "cleared"),
    ]


def test_self_metrics_never_push_a_reading_over_the_limit(tmp_path: Path) -> None:
    links: list[FakeLink] = []
    agent, spool = _agent(tmp_path, links)
    full = {f"m{i:03d}": float(i) for i in range(MAX_METRICS_PER_READING)}
    for _ in range(1000):
        agent.record(full)  # 1,000 full readings: a replay batch of 1,000 to the limit
    agent.record({"v": 1.0})
    agent.start()
    link = links[0]
    link.connect()
    for _ in range(10):
        agent.pump()
        link.ack_new()
    telemetry = [(t, p) for _, t, p, _ in link.published if t.endswith("/telemetry")]
    decoded = [decode_message(t, p, T0 + 3600 * NS, "t") for t, p in telemetry]
    assert not [d for d in decoded if isinstance(d, Rejected)]
    readings = [r for d in decoded if isinstance(d, Telemetry) for r in d.readings]
    assert sum(len(r.metrics) == MAX_METRICS_PER_READING for r in readings) == 1000
    own = [r for r in readings if "spool_depth" in r.metrics]
    # Not one reading over the limit, and the agent's health still reported: on its own
    # reading after each full one, with the small reading at the end.
    assert len(own) == 1001 and all(len(r.metrics) <= MAX_METRICS_PER_READING for r in readings)
    assert spool.depth == 0


def test_refusals_are_logged_once_per_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monotonic = Monotonic()
    agent, _spool, link = _connected(tmp_path, [], monotonic=monotonic)
    agent.record({"v": 1.0})
    caplog.set_level(logging.INFO)
    for code in (0x87, 0x87, 0x87, 0x97, 0x97, 0x00):
        agent.pump()
        link.ack_new(code=code)
        agent.pump()
        monotonic.now += 120.0
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    accepted = [
        r.getMessage() for r in caplog.records if "accepts publishes again" in r.getMessage()
    ]
    assert len(refused) == 2 and "0x87 Not authorized" in refused[0]
    assert "0x97 Quota exceeded" in refused[1]
    assert len(accepted) == 1 and "after 5 refusal(s)" in accepted[0]


class Ticker:
    """A monotonic clock the test moves; each reading of it moves it on by a hair, so that a
    loop waiting for a deadline (stop's flush) ends."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


def _lingering_agent(
    tmp_path: Path, links: list[FakeLink], ticker: Ticker, **kwargs: Any
) -> tuple[EdgeAgent, Spool]:
    agent, spool = _agent(tmp_path, links, linger_s=1.0, monotonic=ticker, **kwargs)
    agent.start()
    links[0].connect()
    agent.pump()
    return agent, spool


def _telemetry_messages(link: FakeLink) -> list[list[float]]:
    out = []
    for _, topic, payload, _ in link.published:
        if topic.endswith("/telemetry"):
            body = json.loads(payload)
            out.append([r["metrics"]["v"] for r in body.get("batch", [body])])
    return out


def test_linger_sends_the_readings_of_one_second_as_one_batch(tmp_path: Path) -> None:
    links: list[FakeLink] = []
    ticker = Ticker()
    agent, spool = _lingering_agent(tmp_path, links, ticker)
    for i in range(5):
        agent.record({"v": float(i)})
        agent.pump()
        ticker.now += 0.1
    assert _telemetry_messages(links[0]) == []  # held, and already on disk:
    assert spool.depth == 5
    ticker.now += 0.6  # the first reading's second is over
    agent.pump()
    assert _telemetry_messages(links[0]) == [[0.0, 1.0, 2.0, 3.0, 4.0]]
    assert spool.depth == 5  # still there until the PUBACK
    links[0].ack_all()
    agent.pump()
    assert spool.depth == 0
    assert (agent.stats.messages_published, agent.stats.acked) == (1, 5)


def test_pump_waits_no_longer_than_the_linger(tmp_path: Path) -> None:
    links: list[FakeLink] = []
    ticker = Ticker()
    agent, _spool = _lingering_agent(tmp_path, links, ticker)
    agent.record({"v": 1.0})
    agent.pump()
    ticker.now += 1.0
    agent.pump(timeout_s=30.0)  # due already: returns at once instead of waiting 30 s
    assert _telemetry_messages(links[0]) == [[1.0]]


def test_an_alert_is_never_held_and_sends_what_waits_before_it(tmp_path: Path) -> None:
    links: list[FakeLink] = []
    ticker = Ticker()
    agent, _spool = _lingering_agent(tmp_path, links, ticker)
    agent.record({"v": 1.0})
    agent.record({"v": 2.0})
    agent.alert("overheat", "critical", message="hot")
    agent.pump()
    kinds = [t.rsplit("/", 1)[1] for _, t, _, _ in links[0].published[1:]]
    assert kinds == ["telemetry", "alert"]  # in spool order, no time passed
    assert _telemetry_messages(links[0]) == [[1.0, 2.0]]


def test_a_full_batch_goes_without_waiting(tmp_path: Path) -> None:
    links: list[FakeLink] = []
    ticker = Ticker()
    agent, _spool = _lingering_agent(tmp_path, links, ticker, batch_max_bytes=400)
    for i in range(6):
        agent.record({"v": float(i)})
    agent.pump()
    sent = _telemetry_messages(links[0])
    assert sent and all(len(batch) > 1 for batch in sent)
    values = [v for batch in sent for v in batch]
    # The full batches went at once and in order; only the last, not full, waits.
    assert 2 <= len(values) < 6 and values == [float(i) for i in range(len(values))]


def test_the_linger_is_never_longer_than_the_interval(tmp_path: Path) -> None:
    links: list[FakeLink] = []
    agent, _spool = _agent(tmp_path, links, linger_s=1.0)
    assert agent.linger_seconds == 1.0  # interval 5 s
    agent.update_info(DeviceInfo(interval_s=0.2))
    assert agent.linger_seconds == 0.2  # STALE after 0.6 s: a 1 s linger would show it


def test_readings_from_before_a_restart_do_not_linger(tmp_path: Path) -> None:
    links: list[FakeLink] = []
    ticker = Ticker()
    agent, spool = _agent(tmp_path, links, linger_s=1.0, monotonic=ticker)
    for i in range(3):
        agent.record({"v": float(i)})
    spool.close()  # never connected: everything is still in the spool
    agent, spool = _lingering_agent(tmp_path, links, ticker)
    assert _telemetry_messages(links[0]) == [[0.0, 1.0, 2.0]]


def test_stop_sends_what_lingers(tmp_path: Path) -> None:
    links: list[FakeLink] = []
    ticker = Ticker()
    agent, _spool = _lingering_agent(tmp_path, links, ticker)
    agent.record({"v": 1.0})
    agent.pump()
    agent.stop(timeout_s=0.5)
    topics = [t.rsplit("/", 1)[1] for _, t, _, _ in links[0].published]
    assert topics == ["status", "telemetry", "status"]


def test_gzip_batches_are_announced_and_decode_to_the_same_readings(tmp_path: Path) -> None:
    links: list[FakeLink] = []
    ticker = Ticker()
    agent, _spool = _lingering_agent(tmp_path, links, ticker, gzip=True)
    agent.record({"v": 1.0})
    ticker.now += 1.0
    agent.pump()  # a single reading: gzip would not make it smaller
    for i in range(20):
        agent.record({"v": float(i)})
    ticker.now += 1.0
    agent.pump()
    link = links[0]
    assert link.content_types == [None, None, "application/json+gzip"]
    _, topic, payload, _ = link.published[2]
    decoded = decode_message(topic, payload, T0 + 100 * NS, "t", link.content_types[2])
    assert isinstance(decoded, Telemetry), decoded
    assert [r.metrics["v"] for r in decoded.readings] == [float(i) for i in range(20)]
    assert agent.stats.gzipped == 1
