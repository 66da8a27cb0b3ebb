"""ingest room: write batches of line protocol to InfluxDB 2.x through influxdb-client.

Touches InfluxDB only (`POST /api/v2/write`, gzip body, precision ns), through influxdb-client's
`WriteService`, one synchronous call per batch: the journal writer must know, per batch,
whether it was stored before it removes the entries, and must decide itself what a refusal
means (influxdb-client's batching WriteApi retries and drops on its own). Not `write_api`'s
synchronous mode either: it gzips at level 9, 1.31x the wall time and 9x the client CPU of
level 1 for the same batches (`python -m bench.writer`, docs/architecture.md).

- 2xx: stored.
- 429, 5xx, a network error, and 401/403/404 (a token or bucket problem is ours to fix, not the
  message's): retried with backoff forever, honouring Retry-After, one log line per attempt at
  most every `LOG_INTERVAL_SECONDS`. Nothing is dropped; the journal holds what follows.

- any other 4xx (a field type conflict, a "partial write", a line InfluxDB cannot parse): the
  batch is split in halves until the refused entries are isolated; the rest is stored, and each
  refused entry is returned with InfluxDB's error text so the caller can dead-letter it.

An entry's `lines` go to the raw bucket and its `state_lines` to the state bucket
(`state_post`), with the same retries; an entry is stored only when both answered 2xx.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService

from ingest.pipeline import Entry, state_lines_to_write

BACKOFF_INITIAL_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 5.0
RETRY_AFTER_MAX_SECONDS = 60.0
LOG_INTERVAL_SECONDS = 10.0
ERROR_TEXT_MAX_CHARS = 900
GZIP_LEVEL = 1  # line protocol compresses ~10x at level 1; higher levels only cost CPU

_CONFIG_STATUSES = frozenset({401, 403, 404})
_RETRY_STATUSES = frozenset({0, 429}) | _CONFIG_STATUSES


@dataclass(frozen=True, slots=True)
class WriteResponse:
    """The outcome of one HTTP attempt. `status` 0 means no response (network error)."""

    status: int
    text: str = ""
    retry_after_seconds: float | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        return self.status in _RETRY_STATUSES or self.status >= 500


Post = Callable[[bytes], WriteResponse]


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


def error_text(body: bytes) -> str:
    """InfluxDB's `message` from a JSON error body, else the body itself, shortened."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        text = parsed["message"]
    return text[:ERROR_TEXT_MAX_CHARS]


def encode_body(lines: Sequence[str]) -> bytes:
    # `replace` only matters for text the decoder could not vet (an instance name from a
    # non-UTF-8 environment); one odd character must not make a batch unwritable.
    return gzip.compress("\n".join(lines).encode("utf-8", errors="replace"), GZIP_LEVEL)


class ClientWriter:
    """One POST per call through influxdb-client's write service (its keep-alive pool).

    The body arrives gzipped at `GZIP_LEVEL` and is sent with `Content-Encoding: gzip`; the
    client's own gzip (`enable_gzip`) would compress at level 9 on every write.
    """

    def __init__(
        self,
        *,
        url: str,
        org: str,
        bucket: str,
        token: str,
        timeout_seconds: float,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"INFLUXDB_V2_URL must be http(s)://host:port, not {url!r}")
        self._client = InfluxDBClient(
            url=url, token=token, org=org, timeout=int(timeout_seconds * 1000)
        )
        self._service = WriteService(self._client.api_client)  # type: ignore[no-untyped-call]
        self._org = org
        self._bucket = bucket
        self._wall_clock = wall_clock

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def __call__(self, body: bytes) -> WriteResponse:
        try:
            self._service.post_write(  # type: ignore[no-untyped-call]
                org=self._org,
                bucket=self._bucket,
                body=body,
                precision="ns",
                content_encoding="gzip",
                content_type="text/plain; charset=utf-8",
            )
        except ApiException as exc:
            headers: Mapping[str, str] = exc.headers or {}
            return WriteResponse(
                status=int(exc.status or 0),
                text=error_text(
                    exc.body if isinstance(exc.body, bytes) else str(exc.body or "").encode()
                ),
                retry_after_seconds=parse_retry_after(
                    headers.get("Retry-After"), self._wall_clock()
                ),
            )
        except Exception as exc:  # urllib3's connection errors have no common base with OSError
            return WriteResponse(status=0, text=f"{type(exc).__name__}: {exc}")
        return WriteResponse(status=204)


@dataclass(slots=True)
class StoreResult:
    """What became of a batch: stored entries, refused entries with InfluxDB's reason, and
    whether every entry got an answer (False: the caller gave up, e.g. at shutdown)."""

    stored: list[Entry] = field(default_factory=list)
    refused: list[tuple[Entry, str]] = field(default_factory=list)
    complete: bool = True
    attempts: int = 0


class InfluxSink:
    """Stores batches of entries, retrying and splitting as the module docstring says."""

    def __init__(
        self,
        *,
        post: Post,
        state_post: Post | None = None,
        logger: logging.Logger | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], int] = time.time_ns,
        backoff_initial_seconds: float = BACKOFF_INITIAL_SECONDS,
        backoff_max_seconds: float = BACKOFF_MAX_SECONDS,
        log_interval_seconds: float = LOG_INTERVAL_SECONDS,
    ) -> None:
        self._post = post
        # Where `Entry.state_lines` go (the state bucket); the raw bucket's writer if unset.
        self._state_post = state_post or post
        self._log = logger or logging.getLogger(__name__)
        self._monotonic = monotonic
        # Wall clock for which rollup markers are due (`Entry.raw_lines`).
        self._clock = clock
        self._backoff_initial = backoff_initial_seconds
        self._backoff_max = backoff_max_seconds
        self._log_interval = log_interval_seconds

    def store(self, entries: Sequence[Entry], *, give_up: threading.Event) -> StoreResult:
        """Write `entries`; returns when each is stored or refused, or `give_up` is set."""
        result = StoreResult()
        pending: list[list[Entry]] = [list(entries)] if entries else []
        while pending:
            part = pending.pop()
            response = self._write_until_answered(part, give_up, result)
            if response is None:
                result.complete = False
                return result
            if response.ok:
                result.stored.extend(part)
            elif len(part) == 1:
                result.refused.append((part[0], response.text or f"HTTP {response.status}"))
            else:
                middle = len(part) // 2
                self._log.info(
                    "influxdb refused a batch of %d messages (HTTP %d: %s); splitting it to "
                    "find the offending message",
                    len(part),
                    response.status,
                    response.text[:200],
                )
                # Second half pushed first so the first half is written first.
                pending.append(part[middle:])
                pending.append(part[:middle])
        return result

    def _write_until_answered(
        self, part: list[Entry], give_up: threading.Event, result: StoreResult
    ) -> WriteResponse | None:
        """Write each bucket's lines of `part`; the first refusal (or give-up) is the answer."""
        groups = (
            (self._post, [line for entry in part for line in entry.raw_lines(self._clock())]),
            (self._state_post, state_lines_to_write(part)),
        )
        response = WriteResponse(status=204)
        for post, lines in groups:
            if not lines:
                continue
            answer = self._post_until_answered(post, lines, give_up, result)
            if answer is None or not answer.ok:
                return answer
            response = answer
        return response

    def _post_until_answered(
        self, post: Post, lines: list[str], give_up: threading.Event, result: StoreResult
    ) -> WriteResponse | None:
        """POST until InfluxDB answers with anything but a retryable status."""
        body = encode_body(lines)
        delay = self._backoff_initial
        first_failure: float | None = None
        last_log = -float("inf")
        attempt = 0
        while True:
            attempt += 1
            result.attempts += 1
            response = post(body)
            if not response.retryable:
                if first_failure is not None:
                    self._log.info(
                        "influxdb write of %d lines succeeded after %d attempts (%.1f s)",
                        len(lines),
                        attempt,
                        self._monotonic() - first_failure,
                    )
                return response
            now = self._monotonic()
            if first_failure is None:
                first_failure = now
            wait = delay
            if response.retry_after_seconds is not None:
                wait = min(max(response.retry_after_seconds, delay), RETRY_AFTER_MAX_SECONDS)
            if now - last_log >= self._log_interval:
                last_log = now
                self._log.warning(
                    "influxdb write of %d lines failed (attempt %d, %s): %s; keeping it in the "
                    "journal, retrying in %.1f s%s",
                    len(lines),
                    attempt,
                    f"HTTP {response.status}" if response.status else "no response",
                    response.text[:300],
                    wait,
                    " (check the token and bucket)" if response.status in _CONFIG_STATUSES else "",
                )
            if give_up.wait(wait):
                self._log.warning(
                    "giving up a write of %d lines at shutdown; its entries stay in the "
                    "journal for the next start",
                    len(lines),
                )
                return None
            delay = min(delay * 2, self._backoff_max)
