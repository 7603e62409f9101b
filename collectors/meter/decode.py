"""Header decoding of a PacketBatch into per-packet numpy columns.

:func:`decode_packets` reads link layer, IPv4/IPv6 (extension headers, fragments), TCP/UDP/ICMP
and the tunnels it is asked to open (IP-in-IP and 6in4, GRE, VXLAN, GTP-U, Teredo) in one
compiled loop over the packets (:func:`finsa.collectors.meter.decode_loop.decode_loop`). Packets that cannot be decoded
(truncated headers, non-IP frames, bad IP headers, unsupported link types) are counted by reason
in ``finsa_collector_packets_skipped_total`` and left out of the result.

>>> from finsa.collectors.pcap.capture import PacketBatch
>>> frame = bytes(12) + b"\\x08\\x00" + bytes.fromhex("450000280000400040060000c0a80001c0a80002") \\
...     + bytes.fromhex("04d2005000000000000000005002000000000000")
>>> d = decode_packets(PacketBatch.from_packets([(0, frame), (1, b"short")]))
>>> len(d), int(d.protocol[0]), int(d.src_port[0]), int(d.dst_port[0]), int(d.tcp_flags[0]), d.skipped
(1, 6, 1234, 80, 2, {'truncated': 1})
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from finsa.collectors.compiled import readonly_bytes
from finsa.collectors.meter.decode_loop import OUTPUTS, TUNNEL_BITS, decode_loop
from finsa.collectors.pcap.capture import PacketBatch
from finsa.metrics import REGISTRY

__all__ = ["Decoded", "decode_packets", "SKIPPED", "TUNNEL_GRE", "TUNNEL_VXLAN", "TUNNEL_IPIP",
           "TUNNEL_GTP", "TUNNEL_TEREDO", "ALL_TUNNELS"]

SKIPPED = REGISTRY.counter("finsa_collector_packets_skipped_total",
                           "Packets left out of every flow, by reason", ["reason"])

TUNNEL_GRE, TUNNEL_VXLAN, TUNNEL_IPIP, TUNNEL_GTP, TUNNEL_TEREDO = 1, 2, 3, 4, 5
ALL_TUNNELS = frozenset({TUNNEL_GRE, TUNNEL_VXLAN, TUNNEL_IPIP, TUNNEL_GTP, TUNNEL_TEREDO})
_ADDRESSES = ("src_ip", "dst_ip")


@dataclass
class Decoded:
    """Decoded headers of the packets kept; ``index`` points back into the PacketBatch."""

    index: np.ndarray
    ip_version: np.ndarray
    protocol: np.ndarray
    src_ip: np.ndarray
    dst_ip: np.ndarray
    src_port: np.ndarray  # ICMP: type
    dst_port: np.ndarray  # ICMP: code
    vlan_id: np.ndarray
    tcp_flags: np.ndarray
    ip_bytes: np.ndarray
    payload_offset: np.ndarray  # absolute position in the batch buffer
    payload_bytes: np.ndarray  # captured payload bytes available from payload_offset
    fragment: np.ndarray  # 0 none, 1 first fragment, 2 non-first fragment (no ports)
    tunnel_kind: np.ndarray
    skipped: dict[str, int] = field(default_factory=dict)
    #: per packet: first four payload bytes and the sixth, packed by decodefast; -1 where not known
    payload_head: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index)

    def take(self, rows: np.ndarray) -> "Decoded":
        """The packets at ``rows`` (integer positions), every column gathered row-wise."""
        cols = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "skipped"}
        taken = {k: None if v is None else np.take(v, rows, axis=0) for k, v in cols.items()}
        return Decoded(skipped=self.skipped, **taken)  # type: ignore[arg-type]  # None stays None (payload_head)


_REASONS = ("", "truncated", "non_ip", "bad_ip_header", "unsupported_link")


def decode_packets(batch: PacketBatch, tunnels: frozenset[int] = ALL_TUNNELS) -> Decoded:
    """Decode every packet of ``batch``; skipped packets are counted by reason, never raised."""
    n = len(batch)
    if not len(batch.offset) == len(batch.caplen) == len(batch.linktype) == n:
        raise ValueError("decode_packets: the batch's columns differ in length")
    buf = readonly_bytes(batch.data)
    cols = {name: np.empty(n * 16 if name in _ADDRESSES else n, dtype=dtype) for name, dtype in OUTPUTS}
    counts = np.zeros(len(_REASONS), dtype=np.int64)
    kept = decode_loop(buf, len(buf), np.ascontiguousarray(batch.offset, dtype=np.int64),
                       np.ascontiguousarray(batch.caplen, dtype=np.int64),
                       np.ascontiguousarray(batch.linktype, dtype=np.uint16), n,
                       sum(TUNNEL_BITS[t] for t in tunnels), *cols.values(), counts)
    skipped = dict(batch.skipped)
    for code in np.flatnonzero(counts).tolist():
        skipped[_REASONS[code]] = skipped.get(_REASONS[code], 0) + int(counts[code])
    for reason, count in skipped.items():
        SKIPPED.inc(count, reason=reason)
    out = {name: (col.reshape(-1, 16) if name in _ADDRESSES else col)[:kept] for name, col in cols.items()}
    return Decoded(skipped=skipped, **out)
