"""NetFlow v5 datagrams: a 24-byte header and up to 30 fixed 48-byte records, one numpy view.

The records of many datagrams are decoded together (:func:`netflow5_columns`).

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

from finsa.collectors.export import metrics as m
from finsa.collectors.export.columns import ipv4_mapped

__all__ = ["decode_netflow5", "netflow5_chunk", "netflow5_columns", "V5_RECORD"]

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
    found = netflow5_chunk(data)
    if found is None:
        return None
    return netflow5_columns([found])


def netflow5_chunk(data: bytes) -> tuple[bytes, int, int, int, int] | None:
    """(records bytes, count, export ms, sysUptime ms, sampling rate) of a v5 datagram, or None.

    Only the header is read here; :func:`netflow5_columns` decodes many chunks at once.
    """
    if len(data) < _HEADER.size:
        m.skip("truncated_header")
        return None
    version, count, uptime_ms, unix_secs, unix_nsecs, _seq, _etype, _eid, interval = _HEADER.unpack_from(data)
    if version != 5:
        m.skip("bad_version")
        return None
    end = _HEADER.size + count * V5_RECORD.itemsize
    if count > 30 or end > len(data):
        m.skip("bad_record_count")
        return None
    now_ms = unix_secs * 1000 + unix_nsecs // 1_000_000
    return data[_HEADER.size:end], count, now_ms, uptime_ms, max(interval & 0x3FFF, 1)


def netflow5_columns(chunks: list[tuple[bytes, int, int, int, int]]) -> dict[str, np.ndarray]:
    """FLOW columns of the records of many v5 datagrams, in one pass of numpy calls."""
    counts = np.array([c[1] for c in chunks], dtype=np.int64)
    rec = np.frombuffer(b"".join(c[0] for c in chunks), V5_RECORD, count=int(counts.sum()))
    count = len(rec)
    now_ms = np.repeat(np.array([c[2] for c in chunks], dtype=np.int64), counts)
    uptime_ms = np.repeat(np.array([c[3] for c in chunks], dtype=np.int64), counts)
    rate = np.repeat(np.array([c[4] for c in chunks], dtype=np.uint64), counts)
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
