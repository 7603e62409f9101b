"""Packet evidence kept at the institution: a bounded ring of recent packets, cut into a pcap on request.

:class:`PacketRing` keeps the capture's :class:`~finsa.collectors.pcap.capture.PacketBatch`
chunks as they come (no copy: a live block is already a copy of the kernel ring), dropping the
oldest while the ring holds more than ``max_bytes`` or packets older than ``max_age_s`` before
the newest. :meth:`PacketRing.cut` writes the packets of one flow (both directions of a
5-tuple; ports and protocol optional) in a time range to a pcap, for the institution's analyst
looking at an alert; :class:`~finsa.collectors.agent.endpoint.LocalEndpoint` serves that on a
loopback address of the agent host (``GET /pcap``, beside the address translation). Nothing is
sent to the centre: the agent never reads from it, and the packets leave the host only if
someone there exports them.

>>> from finsa.collectors.pcap.capture import PacketBatch
>>> frame = bytes(12) + b"\\x08\\x00" + bytes.fromhex("450000280000400040060000c0a80001c0a80002") \\
...     + bytes.fromhex("04d2005000000000000000005002000000000000")
>>> ring = PacketRing(max_bytes=1 << 20, max_age_s=60)
>>> ring.add(PacketBatch.from_packets([(1_000_000_000, frame), (2_000_000_000, frame)]))
>>> import io; out = io.BytesIO()
>>> ring.cut(out, a="192.168.0.2", b="192.168.0.1", a_port=80, from_ms=0, to_ms=1500)
1
"""

from __future__ import annotations

import collections
import ipaddress
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from finsa.collectors.meter.decode import decode_packets
from finsa.collectors.pcap.capture import PacketBatch
from finsa.collectors.pcap.writer import PcapWriter
from finsa.metrics import REGISTRY
from finsa.wire import ip_to_bytes

__all__ = ["PacketRing"]

RING_BYTES = REGISTRY.gauge("finsa_agent_packet_ring_bytes", "Bytes of packets the agent's ring holds")
CUTS = REGISTRY.counter("finsa_agent_pcap_cuts_total", "Pcap cuts asked of the agent's packet ring", ["outcome"])


@dataclass
class _Chunk:
    batch: PacketBatch
    first_ns: int
    last_ns: int
    size: int


class PacketRing:
    """Recent packets within ``max_bytes`` and ``max_age_s`` (see the module docstring); thread-safe."""

    def __init__(self, max_bytes: int = 256 << 20, max_age_s: float = 600.0) -> None:
        if max_bytes <= 0 or max_age_s <= 0:
            raise ValueError("max_bytes and max_age_s must be positive")
        self.max_bytes, self.max_age_ns = max_bytes, int(max_age_s * 1e9)
        self._chunks: collections.deque[_Chunk] = collections.deque()
        self._bytes = 0
        self._newest_ns = 0
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        return self._bytes

    def add(self, batch: PacketBatch) -> None:
        if not len(batch):
            return
        size = int(batch.caplen.sum()) + 40 * len(batch)  # the packets' bytes (a file reader's buffer is shared)
        chunk = _Chunk(batch, int(batch.ts_ns.min()), int(batch.ts_ns.max()), size)
        with self._lock:
            self._chunks.append(chunk)
            self._bytes += chunk.size
            self._newest_ns = max(self._newest_ns, chunk.last_ns)
            oldest_kept_ns = self._newest_ns - self.max_age_ns
            while self._chunks and (self._bytes > self.max_bytes or self._chunks[0].last_ns < oldest_kept_ns):
                self._bytes -= self._chunks.popleft().size
            RING_BYTES.set(self._bytes)

    def cut(self, out: BinaryIO | Path, *, a: str, b: str, a_port: int | None = None, b_port: int | None = None,
            protocol: int | None = None, from_ms: int, to_ms: int) -> int:
        """Write the packets between ``a`` and ``b`` (either direction) in [from_ms, to_ms] to a
        nanosecond pcap; returns how many. Addresses must parse (ValueError otherwise)."""
        ends = {ip_to_bytes(str(ipaddress.ip_address(a))), ip_to_bytes(str(ipaddress.ip_address(b)))}
        lo, hi = int(from_ms) * 1_000_000, int(to_ms) * 1_000_000 + 999_999
        with self._lock:
            chunks = [c for c in self._chunks if c.last_ns >= lo and c.first_ns <= hi]
        written = 0
        linktype = int(chunks[0].batch.linktype[0]) if chunks else 1
        with PcapWriter(out, linktype=linktype, nanosecond=True) as writer:
            for chunk in chunks:
                rows = _matching(chunk.batch, ends, a_port, b_port, protocol, lo, hi)
                batch = chunk.batch
                if len(rows):
                    writer.write_batch(batch.ts_ns[rows], np.frombuffer(batch.data, dtype=np.uint8), batch.offset[rows],
                                       batch.caplen[rows])
                    written += len(rows)
        CUTS.inc(outcome="ok")
        return written


def _matching(batch: PacketBatch, ends: set[bytes], a_port: int | None, b_port: int | None,
              protocol: int | None, lo: int, hi: int) -> np.ndarray:
    """Indices (into ``batch``) of the flow's packets in [lo, hi] ns."""
    decoded = decode_packets(batch)
    if not len(decoded):
        return np.empty(0, dtype=np.int64)
    src = [bytes(r) for r in decoded.src_ip]
    dst = [bytes(r) for r in decoded.dst_ip]
    pair = np.array([s in ends and d in ends and (s != d or len(ends) == 1) for s, d in zip(src, dst)], dtype=bool)
    ts = batch.ts_ns[decoded.index]
    keep = pair & (ts >= lo) & (ts <= hi)
    for port in (a_port, b_port):
        if port is not None:
            keep &= (decoded.src_port == port) | (decoded.dst_port == port)
    if protocol is not None:
        keep &= decoded.protocol == protocol
    return np.asarray(decoded.index)[keep]
