"""A query past its timeout or InfluxDB's limits says so, never "cannot be reached"."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from influxdb_client.rest import ApiException
from urllib3.exceptions import ReadTimeoutError

from dashboard import data


def test_a_timeout_names_the_view_and_what_to_do() -> None:
    try:
        try:
            raise TimeoutError("read timed out")
        except TimeoutError as inner:
            raise ReadTimeoutError(None, "/api/v2/query", "Read timed out.") from inner  # type: ignore[arg-type]
    except ReadTimeoutError as exc:
        msg = data.query_failure_message("state_last_seen", "http://x", 10.0, exc)
    assert msg is not None
    assert "state_last_seen" in msg and "10 s" in msg and "INFLUXDB_TIMEOUT_SECONDS" in msg
    assert "cannot be reached" not in msg


def test_influxd_limits_are_named() -> None:
    memory = ApiException(status=500, reason="Internal Server Error")  # type: ignore[no-untyped-call]
    memory.body = '{"message":"memory allocation limit reached: limit 268435456 bytes"}'
    assert "query-memory-bytes" in (data.query_failure_message("fleet", "u", 10, memory) or "")
    queue = ApiException(status=429, reason="Too Many Requests")  # type: ignore[no-untyped-call]
    queue.body = '{"message":"queue length exceeded"}'
    assert "busy" in (data.query_failure_message("fleet", "u", 10, queue) or "")


def test_a_refused_connection_is_still_unreachable() -> None:
    refused = ConnectionRefusedError("[Errno 111] Connection refused")
    assert data.query_failure_message("fleet", "u", 10, refused) is None


def test_one_fleet_query_in_flight_per_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    running = 0
    most = 0
    guard = threading.Lock()

    def slow(connection: data.Connection) -> Any:
        nonlocal running, most
        with guard:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with guard:
            running -= 1
        return connection, None

    monkeypatch.setattr(data, "_load_fleet_cached", slow)
    conn = data.Connection(
        url="u", org="o", token="t", bucket="b", bucket_1m="m", bucket_1h="h",
        bucket_ops="ops", timeout_s=1.0, ingest_interval_s=10.0,
    )  # fmt: skip
    threads = [threading.Thread(target=data.load_fleet, args=(conn,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 1
