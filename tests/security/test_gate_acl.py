"""The gate's reading of topic names in Produce and Metadata requests: flexible and classic
versions, and hostile bytes never get through (a request that does not parse is refused)."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from finsa.streams.gate_acl import AGENT_TOPICS, TopicPolicy, request_topics

POLICY = TopicPolicy(AGENT_TOPICS)


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _compact(raw: bytes) -> bytes:
    return _uvarint(len(raw) + 1) + raw


def produce_v9(*topics: str) -> bytes:
    """A flexible (v9) Produce request: header v2, compact strings and arrays, tagged fields."""
    body = _compact(b"") + struct.pack(">hi", -1, 5000) + _uvarint(len(topics) + 1)
    for t in topics:
        body += _compact(t.encode()) + _uvarint(2) + struct.pack(">i", 0) + _compact(b"records") + b"\x00" + b"\x00"
    return struct.pack(">hhih", 0, 9, 1, 3) + b"cli" + b"\x00" + body + b"\x00"


def metadata_v12(*topics: str) -> bytes:
    body = _uvarint(len(topics) + 1) + b"".join(bytes(16) + _compact(t.encode()) + b"\x00" for t in topics)
    return struct.pack(">hhih", 3, 12, 1, 3) + b"cli" + b"\x00" + body + b"\x01\x00\x00"


def test_flexible_requests_name_their_topics() -> None:
    assert request_topics(produce_v9("finsa.flows.v2", "finsa.alerts.v1")) == ["finsa.flows.v2", "finsa.alerts.v1"]
    assert POLICY.allows(produce_v9("finsa.flows.v2"))
    assert not POLICY.allows(produce_v9("finsa.flows.v2", "finsa-worker-finsa-sector-state-changelog"))
    assert POLICY.allows(metadata_v12("finsa.heartbeats.v1"))
    assert not POLICY.allows(metadata_v12("made-up-topic"))  # would be auto-created by some brokers


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=10, max_size=200), st.sampled_from([0, 3]), st.integers(0, 15))
def test_hostile_bytes_are_refused_never_raise(tail: bytes, api_key: int, version: int) -> None:
    frame = struct.pack(">hhih", api_key, version, 1, 0) + tail
    allowed = POLICY.allows(frame)
    if allowed:  # only if the bytes happen to name data topics (or none) of a readable version
        assert set(request_topics(frame) or []) <= AGENT_TOPICS
