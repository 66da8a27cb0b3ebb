"""The edge-linger bench's wire-size arithmetic (MQTT v5 PUBLISH packet sizes)."""

from __future__ import annotations

from bench.edge_linger import publish_packet_bytes
from edgewatch.contract import CONTENT_TYPE_JSON_GZIP


def test_publish_packet_size_without_properties() -> None:
    # header 1 + length 1 + (topic 2 + 3, packet id 2, properties length 1, payload 10)
    assert publish_packet_bytes("a/b", 10, None) == 20


def test_publish_packet_size_with_the_content_type() -> None:
    # the property: identifier 1 + string length 2 + 21 characters
    assert publish_packet_bytes("a/b", 10, CONTENT_TYPE_JSON_GZIP) == 20 + 24


def test_publish_packet_length_field_grows_past_127_bytes() -> None:
    assert publish_packet_bytes("a/b", 119, None) == 1 + 1 + 127
    assert publish_packet_bytes("a/b", 120, None) == 1 + 2 + 128
