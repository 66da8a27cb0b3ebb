"""The edge contract (v1), receiving side: topic parsing, payload decoding and validation.

Pure functions: bytes, a topic and the MQTT v5 content type in, a `DeviceMessage` or a
`Rejected` out. Nothing here
raises on bad input; `decode_message` is total. The reasons name the offending field and what
was wrong with it (`metrics.cpu_temp_c: NaN is not a finite number`) so an operator reading
the dead letters can fix the device without reading our code.

Total by construction: every conversion that can fail on a legal JSON value (a float() of an
integer past 1e308, a time past what InfluxDB stores, a repr() of a nested array) is bounded
or guarded where it happens, and the tests draw extreme values for every field. Besides,
`decode_message` turns any exception it did not foresee into a rejection with the code
`internal`, so one message can never stop the ingest.

Compressed payloads (v1.1): a payload announced with the content type
`application/json+gzip` is gunzipped before it is decoded, never beyond the contract's size
limit (a gzip bomb costs at most 256 KiB of memory and becomes a `too_large` dead letter);
a payload without that announcement is decoded exactly as in v1, whatever its bytes.

The sending side (payloads from values) is `edgewatch.encode`.
"""

from __future__ import annotations

import calendar
import functools
import json
import math
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, cast

from edgewatch.models import (
    SEVERITIES,
    AlertEvent,
    DeviceMessage,
    MessageKind,
    MetricValue,
    Reading,
    Rejected,
    StatusEvent,
    Telemetry,
)

MAX_PAYLOAD_BYTES = 256 * 1024
MAX_FUTURE_SKEW_NS = 5 * 60 * 1_000_000_000
MAX_METRICS_PER_READING = 256
MAX_BATCH_READINGS = 1000
MAX_MESSAGE_CHARS = 1024
MAX_TEXT_CHARS = 256
MAX_SEQ = 2**63 - 1
# InfluxDB's last representable time (2262-04-11T23:47:16.854775806Z).
MAX_TS_NS = 2**63 - 2
# A `ts` further ahead than this is not quoted in seconds (its float would overflow).
_FAR_FUTURE_NS = 10**30
# Epoch numbers in this range are milliseconds of 1973 to 5138, not seconds.
_LOOKS_LIKE_MS = (1e11, 1e14)
# Values quoted in a reason are cut to this many characters: a reason is a dead letter's text.
MAX_QUOTED_CHARS = 80
PAYLOAD_EXCERPT_BYTES = 1024
DEFAULT_INTERVAL_SECONDS = 60.0
MAX_INTERVAL_SECONDS = 86400.0

# Contract v1.1 (status): a model file's sha256 and a bounded set of labels.
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
LABEL_KEY_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_LABELS = 16
MAX_LABEL_VALUE_CHARS = 64
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
METRIC_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
# Distinct names whose check is remembered; a fleet uses a few dozen.
METRIC_NAME_CACHE_SIZE = 4096
# [0-9], not \d: \d also matches other scripts' digits, which int() would then accept.
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
KINDS: tuple[MessageKind, ...] = ("telemetry", "alert", "status")
# Contract v1.1: the MQTT v5 content type that announces a gzip-compressed JSON payload. The
# `+gzip` structured-syntax suffix (RFC 8460) reads "the named type, gzip-compressed".
CONTENT_TYPE_JSON_GZIP = "application/json+gzip"
# wbits for zlib: 16 + the largest window = gzip framing only (no raw deflate, no zlib header).
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_GZIP_MAGIC = b"\x1f\x8b"

# Rejection codes: a small closed set, so they can be a tag and a counter each.
REJECT_TOPIC = "topic"
REJECT_TOO_LARGE = "too_large"
REJECT_ENCODING = "encoding"
REJECT_JSON = "json"
REJECT_SCHEMA = "schema"
REJECT_CLOCK_SKEW = "clock_skew"
# v1.1: a payload announced as gzip that is not a whole, valid gzip stream.
REJECT_COMPRESSION = "compression"
# Not the decoder's: the ingest gives this code to a message InfluxDB refused (e.g. a field
# type conflict), with InfluxDB's own error text as the reason.
REJECT_STORAGE = "storage"
# The safety net: an exception the decoder (or the line protocol) did not foresee. The reason
# carries the exception's type and text; such a dead letter is a bug report.
REJECT_INTERNAL = "internal"
REJECT_CODES: tuple[str, ...] = (
    REJECT_TOPIC,
    REJECT_TOO_LARGE,
    REJECT_ENCODING,
    REJECT_JSON,
    REJECT_SCHEMA,
    REJECT_CLOCK_SKEW,
    REJECT_COMPRESSION,
    REJECT_STORAGE,
    REJECT_INTERNAL,
)


class ContractError(ValueError):
    """Raised inside this module only; `decode_message` turns it into a `Rejected`."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Topic:
    root: str
    site: str
    device: str
    kind: MessageKind

    def __str__(self) -> str:
        return f"{self.root}/{self.site}/{self.device}/{self.kind}"


def is_valid_name(value: str) -> bool:
    """Whether `value` may be a site or device name."""
    return NAME_PATTERN.fullmatch(value) is not None


@functools.lru_cache(maxsize=METRIC_NAME_CACHE_SIZE)
def is_valid_metric_name(value: str) -> bool:
    """Whether `value` may be a metric or alert type name (cached: names repeat per reading)."""
    return METRIC_PATTERN.fullmatch(value) is not None


def topic_for(root: str, site: str, device: str, kind: MessageKind) -> str:
    """The topic a device publishes `kind` messages on."""
    return f"{root}/{site}/{device}/{kind}"


def parse_topic(topic: str, root: str) -> Topic:
    """Split `{root}/{site}/{device}/{kind}`; any other shape under the root is an error."""
    prefix = root + "/"
    if not topic.startswith(prefix):
        raise ContractError(REJECT_TOPIC, f"topic {_quote(topic)} is not under the root {root!r}")
    parts = topic[len(prefix) :].split("/")
    if len(parts) != 3:
        raise ContractError(
            REJECT_TOPIC,
            f"topic {_quote(topic)} must be {root}/<site>/<device>/<telemetry|alert|status>",
        )
    site, device, kind = parts
    if not is_valid_name(site):
        raise ContractError(REJECT_TOPIC, f"topic site {_quote(site)} is not a valid name")
    if not is_valid_name(device):
        raise ContractError(REJECT_TOPIC, f"topic device {_quote(device)} is not a valid name")
    if kind not in KINDS:
        raise ContractError(
            REJECT_TOPIC, f"topic kind {_quote(kind)} must be one of telemetry, alert, status"
        )
    return Topic(root=root, site=site, device=device, kind=kind)


# ---------------------------------------------------------------------------- compression


def is_gzip_content_type(content_type: str | None) -> bool:
    """Whether an MQTT v5 content type announces a gzip-compressed JSON payload.

    MIME types compare case-insensitively and may carry parameters (`; charset=utf-8`); any
    other content type (`application/json`, a v1 device's own choice) means plain JSON.
    """
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == CONTENT_TYPE_JSON_GZIP


def gunzip_payload(payload: bytes, limit: int = MAX_PAYLOAD_BYTES) -> bytes:
    """The JSON bytes of a gzip payload, never more than `limit`, or a `ContractError`.

    zlib is asked for at most `limit + 1` bytes, so a stream that inflates to gigabytes costs
    no more memory than a payload at the limit. Concatenated gzip members are one stream (RFC
    1952), as `gzip.decompress` reads them; anything else after the end is corruption.
    """
    if len(payload) > limit:
        raise ContractError(
            REJECT_TOO_LARGE,
            f"payload is {len(payload)} bytes (gzip); the limit is {limit} (256 KiB)",
        )
    if not payload.startswith(_GZIP_MAGIC):
        raise ContractError(
            REJECT_COMPRESSION,
            f"payload is announced as {CONTENT_TYPE_JSON_GZIP} but is not gzip"
            " (it does not start with the gzip magic bytes 1f 8b)",
        )
    out = bytearray()
    rest = payload
    while rest:
        inflater = zlib.decompressobj(_GZIP_WBITS)
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise ContractError(REJECT_COMPRESSION, f"gzip payload is corrupt: {exc}") from None
        if len(out) > limit:
            raise ContractError(
                REJECT_TOO_LARGE,
                f"gzip payload inflates to more than {limit} bytes (256 KiB), the limit for"
                " a decompressed payload",
            )
        if not inflater.eof:
            raise ContractError(
                REJECT_COMPRESSION, "gzip payload is truncated: it ends before the gzip stream does"
            )
        rest = inflater.unused_data
        if rest and not rest.startswith(_GZIP_MAGIC):
            raise ContractError(
                REJECT_COMPRESSION,
                f"gzip payload is corrupt: {len(rest)} bytes after the end of the gzip stream",
            )
    return bytes(out)


# ---------------------------------------------------------------------------- JSON


class _NonFinite:
    """Marks a NaN/Infinity literal so validation can name the field it appeared in."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ContractError(REJECT_JSON, f"duplicate key {_quote(key)} in a JSON object")
        result[key] = value
    return result


# One decoder for every payload: `json.loads` with options builds a new one per call, which
# was a fifth of the cost of parsing a reading.
_JSON = json.JSONDecoder(parse_constant=_NonFinite, object_pairs_hook=_reject_duplicates)


def parse_json(payload: bytes) -> dict[str, Any]:
    """Decode a payload into a JSON object, or raise a `ContractError`."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(
            REJECT_TOO_LARGE,
            f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES} (256 KiB)",
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError(
            REJECT_ENCODING, f"payload is not UTF-8 (byte {exc.start}: {exc.reason})"
        ) from None
    try:
        if text.startswith("\ufeff"):
            # What `json.loads` says of a BOM; `_JSON.decode` does not look for one.
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _JSON.decode(text)
    except json.JSONDecodeError as exc:
        raise ContractError(
            REJECT_JSON, f"payload is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise ContractError(REJECT_JSON, "payload is nested too deeply") from None
    except ContractError:
        raise
    except ValueError as exc:
        # Python refuses integers of more than 4300 digits (a ValueError that is not a
        # JSONDecodeError); without this the decoder would not be total.
        raise ContractError(REJECT_JSON, f"payload is not usable JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ContractError(
            REJECT_SCHEMA, f"payload must be a JSON object, not {_json_type(value)}"
        )
    return value


def _json_type(value: object) -> str:  # noqa: PLR0911 - one return per JSON type
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, _NonFinite):
        return value.literal
    return "an object"


def _quote(value: object) -> str:
    """A value for a rejection reason: text quoted and cut short, anything else by its type.

    Never repr() of a container: a nested array may be nested deeply enough to make repr()
    itself fail, and a reason has to be short anyway.
    """
    if isinstance(value, str):
        if len(value) <= MAX_QUOTED_CHARS:
            return repr(value)
        return repr(value[:MAX_QUOTED_CHARS]) + f"… ({len(value)} characters)"
    return _json_type(value)


# ---------------------------------------------------------------------------- fields


def _schema(path: str, message: str) -> ContractError:
    return ContractError(REJECT_SCHEMA, f"{path}: {message}")


def _not_one_of(path: str, value: object, allowed: str) -> ContractError:
    if isinstance(value, str):
        return _schema(path, f"{_quote(value)} must be {allowed}")
    return _schema(path, f"must be {allowed}, not {_json_type(value)}")


def _finite_number(value: object, path: str) -> float:
    if isinstance(value, _NonFinite):
        raise _schema(path, f"{value.literal} is not a finite number")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _schema(path, f"must be a number, not {_json_type(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise _schema(path, "number is too large") from None
    if not math.isfinite(number):
        raise _schema(path, "is not a finite number")
    return number


def _metric_value(value: object, path: str, name: str) -> MetricValue:
    if type(value) is float and math.isfinite(value):
        # The usual case first, and without building an error path it does not need.
        return value
    if isinstance(value, bool):
        return value
    return _finite_number(value, f"{path}metrics.{name}")


def _optional_text(body: Mapping[str, Any], key: str, limit: int = MAX_TEXT_CHARS) -> str | None:
    if key not in body or body[key] is None:
        return None
    value = body[key]
    if not isinstance(value, str):
        raise _schema(key, f"must be a string, not {_json_type(value)}")
    if len(value) > limit:
        raise _schema(key, f"is {len(value)} characters; the limit is {limit}")
    if not _encodable(value):
        # JSON may spell a lone surrogate (\\ud800); it is no Unicode text and could not be
        # written to InfluxDB, so it is the sender's encoding error, caught here.
        raise ContractError(REJECT_ENCODING, f"{key}: contains an unpaired UTF-16 surrogate")
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _rfc3339_ns(value: str, path: str) -> int:
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise _schema(path, f"{_quote(value)} is not an RFC 3339 time (e.g. 2026-01-31T12:00:00Z)")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, offset = match.group(7), match.group(8)
    # Checked before timegm, which normalises out-of-range fields instead of failing (and
    # fails on year 0 with its own error).
    valid = (
        year >= 1
        and 1 <= month <= 12
        and 1 <= day <= calendar.monthrange(year, month)[1]
        and hour < 24
        and minute < 60
        and second <= 60
        and (offset in ("Z", "z") or (int(offset[1:3]) < 24 and int(offset[4:6]) < 60))
    )
    if not valid:
        raise _schema(path, f"{_quote(value)} is not a valid date and time")
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if offset not in ("Z", "z"):
        sign = 1 if offset[0] == "+" else -1
        seconds -= sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
    nanos = int((fraction[1:] if fraction else "").ljust(9, "0"))
    return seconds * 1_000_000_000 + nanos


def _epoch_ns(value: int | float, path: str) -> int:
    if isinstance(value, float) and not math.isfinite(value):
        raise _schema(path, "is not a finite number")
    # Decimal of the shortest repr keeps 1700000000.123 exact instead of ...122999. The
    # context rounds an integer of thousands of digits instead of failing; the result is
    # only compared, never converted to a float (see parse_timestamp).
    return int(Decimal(repr(value)) * 1_000_000_000)


def parse_timestamp(value: object, path: str, received_ns: int) -> int:
    """`ts` as RFC 3339 text or Unix epoch seconds, to integer nanoseconds."""
    if isinstance(value, str):
        ts_ns = _rfc3339_ns(value, path)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        ts_ns = _epoch_ns(value, path)
    elif isinstance(value, _NonFinite):
        raise _schema(path, f"{value.literal} is not a finite number")
    else:
        raise _schema(path, f"must be RFC 3339 text or epoch seconds, not {_json_type(value)}")
    if ts_ns < 0:
        raise _schema(path, "is before 1970-01-01")
    if ts_ns > received_ns + MAX_FUTURE_SKEW_NS or ts_ns > MAX_TS_NS:
        hint = (
            " (it looks like milliseconds; send seconds)"
            if isinstance(value, int | float) and _LOOKS_LIKE_MS[0] < value < _LOOKS_LIKE_MS[1]
            else ""
        )
        if ts_ns > _FAR_FUTURE_NS or ts_ns <= received_ns + MAX_FUTURE_SKEW_NS:
            # Too far to say in seconds, or not in the future of this receipt time at all
            # but past what InfluxDB can store.
            ahead = "is after 2262-04-11T23:47:16Z, the latest time InfluxDB stores"
        else:
            ahead_s = (ts_ns - received_ns) / 1e9
            ahead = f"{ahead_s:.0f} s in the future; the limit is 300 s"
        raise ContractError(REJECT_CLOCK_SKEW, f"{path}: {ahead} (check the device clock){hint}")
    return ts_ns


def _timestamp(body: Mapping[str, Any], path: str, received_ns: int) -> tuple[int, bool]:
    if "ts" not in body or body["ts"] is None:
        return received_ns, False
    return parse_timestamp(body["ts"], f"{path}ts", received_ns), True


def parse_reading(body: object, path: str, received_ns: int) -> Reading:  # noqa: C901
    """One telemetry reading; `path` prefixes error locations (`batch[3].`)."""
    if not isinstance(body, dict):
        raise _schema(path.rstrip(".") or "payload", f"must be an object, not {_json_type(body)}")
    ts_ns, ts_given = _timestamp(body, path, received_ns)
    seq: int | None = None
    if body.get("seq") is not None:
        raw_seq = body["seq"]
        if isinstance(raw_seq, float) and raw_seq.is_integer():
            raw_seq = int(raw_seq)
        if isinstance(raw_seq, bool) or not isinstance(raw_seq, int):
            raise _schema(f"{path}seq", f"must be an integer, not {_json_type(raw_seq)}")
        if not 0 <= raw_seq <= MAX_SEQ:
            raise _schema(f"{path}seq", "must be a non-negative 64-bit integer")
        seq = raw_seq
    metrics_raw = body.get("metrics")
    if metrics_raw is None:
        raise _schema(f"{path}metrics", "is required")
    if not isinstance(metrics_raw, dict):
        raise _schema(f"{path}metrics", f"must be an object, not {_json_type(metrics_raw)}")
    if not 1 <= len(metrics_raw) <= MAX_METRICS_PER_READING:
        raise _schema(
            f"{path}metrics",
            f"has {len(metrics_raw)} entries; it must have 1 to {MAX_METRICS_PER_READING}",
        )
    metrics: dict[str, MetricValue] = {}
    for name, value in metrics_raw.items():
        if not is_valid_metric_name(name):
            raise _schema(
                f"{path}metrics",
                f"name {_quote(name)} must match ^[a-z][a-z0-9_]{{0,63}}$",
            )
        metrics[name] = _metric_value(value, path, name)
    return Reading(ts_ns=ts_ns, metrics=metrics, seq=seq, ts_given=ts_given)


def parse_telemetry(topic: Topic, body: Mapping[str, Any], received_ns: int) -> Telemetry:
    if "batch" in body:
        batch = body["batch"]
        if not isinstance(batch, list):
            raise _schema("batch", f"must be an array, not {_json_type(batch)}")
        if not 1 <= len(batch) <= MAX_BATCH_READINGS:
            raise _schema(
                "batch", f"has {len(batch)} readings; it must have 1 to {MAX_BATCH_READINGS}"
            )
        if "metrics" in body:
            raise _schema("payload", "has both batch and metrics; send one or the other")
        # Readings without `ts` are stamped receipt time plus their index in nanoseconds:
        # with one shared stamp they would be the same point and overwrite each other.
        readings = tuple(
            parse_reading(item, f"batch[{index}].", received_ns + index)
            for index, item in enumerate(batch)
        )
    else:
        readings = (parse_reading(body, "", received_ns),)
    return Telemetry(site=topic.site, device=topic.device, readings=readings)


def parse_alert(topic: Topic, body: Mapping[str, Any], received_ns: int) -> AlertEvent:
    ts_ns, ts_given = _timestamp(body, "", received_ns)
    alert_type = body.get("type")
    if alert_type is None:
        raise _schema("type", "is required")
    if not isinstance(alert_type, str):
        raise _schema("type", f"must be a string, not {_json_type(alert_type)}")
    if not is_valid_metric_name(alert_type):
        raise _schema("type", f"{_quote(alert_type)} must match ^[a-z][a-z0-9_]{{0,63}}$")
    severity = body.get("severity")
    if severity is None:
        raise _schema("severity", "is required")
    if severity not in SEVERITIES:
        raise _not_one_of("severity", severity, f"one of {', '.join(SEVERITIES)}")
    state = body.get("state", "raised")
    if state is None:
        state = "raised"
    if state not in ("raised", "cleared"):
        raise _not_one_of("state", state, "raised or cleared")
    message = _optional_text(body, "message", MAX_MESSAGE_CHARS) or ""
    value = None if body.get("value") is None else _finite_number(body["value"], "value")
    return AlertEvent(
        site=topic.site,
        device=topic.device,
        ts_ns=ts_ns,
        type=alert_type,
        severity=severity,
        state=cast(Literal["raised", "cleared"], state),
        message=message,
        value=value,
        ts_given=ts_given,
    )


def _optional_number(body: Mapping[str, Any], key: str, low: float, high: float) -> float | None:
    if body.get(key) is None:
        return None
    number = _finite_number(body[key], key)
    if not low <= number <= high:
        raise _schema(key, f"{number:g} is outside {low:g} to {high:g}")
    return number


def _optional_sha256(body: Mapping[str, Any]) -> str | None:
    value = _optional_text(body, "model_sha256")
    if value is not None and not SHA256_PATTERN.fullmatch(value):
        raise _schema("model_sha256", f"{_quote(value)} must be 64 lowercase hex digits")
    return value


def parse_labels(value: object) -> tuple[tuple[str, str], ...]:
    """A status's `labels` object: at most 16 entries, short keys, string values."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise _schema("labels", f"must be an object, not {_json_type(value)}")
    if len(value) > MAX_LABELS:
        raise _schema("labels", f"has {len(value)} entries; the limit is {MAX_LABELS}")
    labels: list[tuple[str, str]] = []
    for key, text in value.items():
        if not LABEL_KEY_PATTERN.fullmatch(key):
            raise _schema(f"labels.{_quote(key)}", "key must match ^[a-z][a-z0-9_]{0,31}$")
        labels.append((key, _label_value(key, text)))
    return tuple(sorted(labels))


def _label_value(key: str, text: object) -> str:
    if not isinstance(text, str):
        raise _schema(f"labels.{key}", f"must be a string, not {_json_type(text)}")
    if len(text) > MAX_LABEL_VALUE_CHARS:
        raise _schema(
            f"labels.{key}", f"is {len(text)} characters; the limit is {MAX_LABEL_VALUE_CHARS}"
        )
    if not _encodable(text):
        raise ContractError(REJECT_ENCODING, f"labels.{key}: contains an unpaired UTF-16 surrogate")
    return text


def parse_status(topic: Topic, body: Mapping[str, Any], received_ns: int) -> StatusEvent:
    ts_ns, ts_given = _timestamp(body, "", received_ns)
    state = body.get("state")
    if state is None:
        raise _schema("state", "is required")
    if state not in ("online", "offline"):
        raise _not_one_of("state", state, "online or offline")
    interval = _optional_number(body, "interval_s", 0.001, MAX_INTERVAL_SECONDS)
    return StatusEvent(
        site=topic.site,
        device=topic.device,
        ts_ns=ts_ns,
        state=cast(Literal["online", "offline"], state),
        reason=_optional_text(body, "reason"),
        interval_s=interval,
        model=_optional_text(body, "model"),
        model_version=_optional_text(body, "model_version"),
        firmware=_optional_text(body, "firmware"),
        lat=_optional_number(body, "lat", -90.0, 90.0),
        lon=_optional_number(body, "lon", -180.0, 180.0),
        ts_given=ts_given,
        model_sha256=_optional_sha256(body),
        labels=parse_labels(body.get("labels")),
    )


def payload_excerpt(payload: bytes, limit: int = PAYLOAD_EXCERPT_BYTES) -> str:
    """A printable excerpt of a payload for the dead letters: never fails, never too long."""
    text = payload[:limit].decode("utf-8", errors="replace")
    return text + ("…" if len(payload) > limit else "")


MAX_INTERNAL_REASON_CHARS = 500


def internal_rejection(
    topic: str, payload: bytes, received_ns: int, exc: BaseException, stage: str
) -> Rejected:
    """The dead letter for an exception nobody foresaw while turning a message into lines.

    Its reason names the stage, the exception's type and its text, so that the dead letter
    is a bug report; building it cannot fail in turn.
    """
    try:
        text = str(exc)
    except Exception:  # an exception whose __str__ fails still gets its dead letter
        text = "(no text)"
    if len(text) > MAX_INTERNAL_REASON_CHARS:
        text = text[:MAX_INTERNAL_REASON_CHARS] + "…"
    return Rejected(
        topic=topic,
        code=REJECT_INTERNAL,
        reason=f"{stage} failed: {type(exc).__name__}: {text}",
        payload_excerpt=payload_excerpt(payload),
        received_ns=received_ns,
    )


def decode_message(
    topic: str,
    payload: bytes,
    received_ns: int,
    root: str,
    content_type: str | None = None,
) -> DeviceMessage | Rejected:
    """Decode one MQTT message. Total: every input gives a message or a rejection.

    `content_type` is the message's MQTT v5 content type (None: it had none); only
    `application/json+gzip` changes anything (see the module docstring).
    """
    try:
        parsed = parse_topic(topic, root)
        if is_gzip_content_type(content_type):
            payload = gunzip_payload(payload)
        body = parse_json(payload)
        if parsed.kind == "telemetry":
            return parse_telemetry(parsed, body, received_ns)
        if parsed.kind == "alert":
            return parse_alert(parsed, body, received_ns)
        return parse_status(parsed, body, received_ns)
    except ContractError as exc:
        return Rejected(
            topic=topic,
            code=exc.code,
            reason=exc.reason,
            payload_excerpt=payload_excerpt(payload),
            received_ns=received_ns,
        )
    except Exception as exc:
        # The second line of defence (see the module docstring): a dead letter, not a crash
        # that would leave the message unacknowledged and stop the ingest on every restart.
        return internal_rejection(topic, payload, received_ns, exc, "decoding")
