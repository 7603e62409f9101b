"""Topic rights at the broker gate: which topics a role's Produce and Metadata requests may name.

The gate checks each request's API key against the role; for the ``agent`` role it also reads the
topic names out of Produce and Metadata requests (the Kafka wire format, flexible or not) and
refuses a request naming any topic outside the data topics an agent feeds. So an institution's
agent cannot write the worker's internal or changelog topics (finding 1 of issue 15), nor have a
topic auto-created by asking for its metadata. A request that does not parse is refused (fail closed).

>>> import struct
>>> def produce_v3(topic):  # header, transactional id null, acks, timeout, one topic, no partitions
...     name = topic.encode()
...     return (struct.pack(">hhih", 0, 3, 1, 1) + b"c" + struct.pack(">hhi", -1, -1, 1000)
...             + struct.pack(">ih", 1, len(name)) + name + struct.pack(">i", 0))
>>> request_topics(produce_v3("finsa.flows.v2"))
['finsa.flows.v2']
>>> TopicPolicy(frozenset({"finsa.flows.v2"})).allows(produce_v3("finsa-worker-finsa-sector-state-changelog"))
False
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from finsa import wire

__all__ = ["AGENT_TOPICS", "TopicPolicy", "request_topics"]

PRODUCE, METADATA = 0, 3
#: What an institution's agent writes: flow batches (and ARP bindings, on the flow topic),
#: heartbeats and forwarded alerts.
AGENT_TOPICS = frozenset(wire.TOPICS[name] for name in ("flows", "heartbeats", "alerts"))
_FLEXIBLE_FROM = {PRODUCE: 9, METADATA: 9}
_MAX_VERSION = {PRODUCE: 12, METADATA: 12}  # later versions name topics by id: not checkable here


class _Reader:
    def __init__(self, data: bytes, pos: int, flexible: bool) -> None:
        self.data, self.pos, self.flexible = data, pos, flexible

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 35:
                raise ValueError("varint too long")

    def length(self, wide: bool = False) -> int:
        """A string/bytes/array length (-1: null)."""
        if self.flexible:
            return self.uvarint() - 1
        return self.take(">i" if wide else ">h")

    def string(self) -> str | None:
        size = self.length()
        if size < 0:
            return None
        raw = self.data[self.pos:self.pos + size]
        if len(raw) != size:
            raise ValueError("short string")
        self.pos += size
        return raw.decode("utf-8")

    def skip(self, size: int) -> None:
        if size > 0:
            if self.pos + size > len(self.data):
                raise ValueError("short field")
            self.pos += size

    def tags(self) -> None:
        if self.flexible:
            for _ in range(self.uvarint()):
                self.uvarint()
                self.skip(self.uvarint())

    def array(self) -> int:
        count = self.length(wide=True)
        if count > len(self.data):
            raise ValueError("array longer than the request")
        return count


def request_topics(frame: bytes) -> list[str] | None:
    """Topic names a Produce or Metadata request names (None: all topics, for Metadata); ValueError
    when the request is malformed or of a version whose topics cannot be read."""
    api_key, version, _corr, id_len = struct.unpack_from(">hhih", frame)
    if api_key not in _FLEXIBLE_FROM or version > _MAX_VERSION[api_key]:
        raise ValueError(f"unsupported request {api_key} v{version}")
    flexible = version >= _FLEXIBLE_FROM[api_key]
    r = _Reader(frame, 10 + max(id_len, 0), flexible)
    try:
        r.tags()  # request header v2 (flexible) ends with tagged fields
        return _produce(r, version) if api_key == PRODUCE else _metadata(r, version)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed request: {exc}") from None


def _produce(r: _Reader, version: int) -> list[str]:
    if version >= 3:
        r.string()  # transactional id
    r.take(">h")
    r.take(">i")  # acks, timeout
    names = []
    for _ in range(r.array()):
        name = r.string()
        if name is None:
            raise ValueError("null topic name")
        names.append(name)
        for _ in range(r.array()):
            r.take(">i")  # partition index
            r.skip(r.length(wide=True))  # records
            r.tags()
        r.tags()
    return names


def _metadata(r: _Reader, version: int) -> list[str] | None:
    count = r.array()
    if count < 0:
        return None
    names = []
    for _ in range(count):
        if version >= 10:
            r.skip(16)  # topic id
        name = r.string()
        if name is not None:
            names.append(name)
        r.tags()
    return names


@dataclass(frozen=True)
class TopicPolicy:
    """The topics a role may name in Produce and Metadata requests (other APIs: the key check)."""

    topics: frozenset[str]

    def allows(self, frame: bytes) -> bool:
        api_key = struct.unpack_from(">h", frame)[0]
        if api_key not in (PRODUCE, METADATA):
            return True
        try:
            names = request_topics(frame)
        except (ValueError, struct.error, IndexError):
            return False
        return names is None and api_key == METADATA or (names is not None and set(names) <= self.topics)
