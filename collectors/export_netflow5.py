"""NetFlow v5 datagrams: a 24-byte header and up to 30 fixed 48-byte records, one numpy view.

Times: the records' first/last are sysUptime milliseconds; epoch ms is
``unix_secs * 1000 + unix_nsecs // 10**6 - (sysUptime - t)`` (modulo 2**32 for uptime wrap).
Sampling: the low 14 bits of the header's sampling_interval (0 means unsampled).
ICMP type/code, carried as ``type << 8 | code`` in the destination port, become the ports.

>>> import struct
>>> head = struct.pack(">HHIIIIBBH", 5, 1, 10_000, 1_700_000_000, 0, 1, 0, 0, 0x4000 | 100)
>>> rec = bytes([10, 0, 0, 1, 10, 0, 0, 2]) + bytes(8) + struct.pack(">IIII", 2, 120, 9_000, 9_500)
>>> rec += struct.pack(">HHBBBB", 1234, 80, 0, 0x12, 6, 0) + bytes(8)
>>> c = decode_netflow5(head + rec)
>>> int(c["src2dst_packets"][0]), int(c["src2dst_bytes"][0]), int(c["first_seen_ms"][0])
(200, 12000, 1699999999000)
"""

from __future__ import annotations

import struct

import numpy as np

from finsa.collectors import export_metrics as m
from finsa.collectors.export_columns import ipv4_mapped

__all__ = ["decode_netflow5", "V5_RECORD"]

_HEADER = struct.Struct(">HHIIIIBBH")
V5_RECORD = np.dtype([
    ("src", ">u4"), ("dst", ">u4"), ("nexthop", ">u4"), ("input", ">u2"), ("output", ">u2"),
    ("packets", ">u4"), ("bytes", ">u4"), ("first", ">u4"), ("last", ">u4"),
    ("src_port", ">u2"), ("dst_port", ">u2"), ("pad1", "u1"), ("tcp_flags", "u1"), ("proto", "u1"),
    ("tos", "u1"), ("src_as", ">u2"), ("dst_as", ">u2"), ("src_mask", "u1"), ("dst_mask", "u1"),
    ("pad2", ">u2"),
])


def decode_netflow5(data: bytes) -> dict[str, np.ndarray] | None:
    """FLOW columns of one v5 datagram, or None (counted) when it is malformed."""
    if len(data) < _HEADER.size:
        m.skip("truncated_header")
        return None
    version, count, uptime_ms, unix_secs, unix_nsecs, _seq, _etype, _eid, interval = _HEADER.unpack_from(data)
    if version != 5:
        m.skip("bad_version")
        return None
    if count > 30 or _HEADER.size + count * V5_RECORD.itemsize > len(data):
        m.skip("bad_record_count")
        return None
    rec = np.frombuffer(data, V5_RECORD, count=count, offset=_HEADER.size)
    rate = np.uint64(max(interval & 0x3FFF, 1))
    now_ms = unix_secs * 1000 + unix_nsecs // 1_000_000
    proto = rec["proto"]
    icmp = ((proto == 1) | (proto == 58)) & (rec["src_port"] == 0)
    src_port = np.where(icmp, rec["dst_port"] >> 8, rec["src_port"]).astype(np.uint16)
    dst_port = np.where(icmp, rec["dst_port"] & 0xFF, rec["dst_port"]).astype(np.uint16)
    ago_first = (uptime_ms - rec["first"].astype(np.int64)) & 0xFFFFFFFF
    ago_last = (uptime_ms - rec["last"].astype(np.int64)) & 0xFFFFFFFF
    return {
        "first_seen_ms": now_ms - ago_first, "last_seen_ms": now_ms - ago_last,
        "ip_version": np.full(count, 4, np.uint8), "protocol": proto.astype(np.uint8),
        "src_ip": ipv4_mapped(rec["src"]), "dst_ip": ipv4_mapped(rec["dst"]),
        "src_port": src_port, "dst_port": dst_port,
        "src2dst_packets": rec["packets"].astype(np.uint64) * rate,
        "src2dst_bytes": rec["bytes"].astype(np.uint64) * rate,
        "src2dst_tcp_flags": rec["tcp_flags"].astype(np.uint8),
    }
