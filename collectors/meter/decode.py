"""Vectorised header decoding of a PacketBatch into per-packet numpy columns.

:func:`decode_packets` reads link layer, IPv4/IPv6 (extension headers, fragments), TCP/UDP/ICMP
and the tunnels it is asked to open (IP-in-IP and 6in4, GRE, VXLAN, GTP-U, Teredo), grouping
packets by layer with numpy masks; no per-packet Python. Packets that cannot be decoded
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

from finsa.collectors.meter.decode_fast import decode_common
from finsa.collectors.meter.linklayer import (ETH_IPV4, ETH_IPV6, ByteView, ethernet_tags, ethertype_from_nibble, isin,
                                       link_layer)
from finsa.collectors.pcap.capture import PacketBatch
from finsa.metrics import REGISTRY
from finsa.wire import ipv4_to_mapped

__all__ = ["Decoded", "decode_packets", "SKIPPED", "TUNNEL_GRE", "TUNNEL_VXLAN", "TUNNEL_IPIP",
           "TUNNEL_GTP", "TUNNEL_TEREDO", "ALL_TUNNELS"]

SKIPPED = REGISTRY.counter("finsa_collector_packets_skipped_total",
                           "Packets left out of every flow, by reason", ["reason"])

TUNNEL_GRE, TUNNEL_VXLAN, TUNNEL_IPIP, TUNNEL_GTP, TUNNEL_TEREDO = 1, 2, 3, 4, 5
ALL_TUNNELS = frozenset({TUNNEL_GRE, TUNNEL_VXLAN, TUNNEL_IPIP, TUNNEL_GTP, TUNNEL_TEREDO})
_V6_EXT = (0, 43, 60, 135, 139, 140, 44, 51)
_PORTED = (6, 17, 136)


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


class _State:
    """Per-packet working columns while the layers are peeled."""

    def __init__(self, n: int) -> None:
        z = lambda dt=np.int64: np.zeros(n, dtype=dt)  # noqa: E731 - a one-line shorthand for ten columns
        self.version, self.proto, self.ip_len, self.l4, self.ip_end = z(), z(), z(), z(), z()
        self.frag, self.sport, self.dport, self.flags, self.payload = z(), z(), z(), z(), z()
        self.tunnel = z()
        self.src = np.zeros((n, 16), dtype=np.uint8)
        self.dst = np.zeros((n, 16), dtype=np.uint8)
        self.reason = np.zeros(n, dtype=np.int8)  # 0 ok, else index into _REASONS


_REASONS = ("", "truncated", "non_ip", "bad_ip_header", "unsupported_link")


def _fail(st: _State, rows: np.ndarray, code: int) -> None:
    st.reason[rows & (st.reason == 0)] = code


def _ipv4(view: ByteView, st: _State, rows: np.ndarray, pos: np.ndarray) -> None:
    _fail(st, rows & ~view.has(pos, 20), 1)
    m = rows & (st.reason == 0)
    if not m.any():
        return
    p = pos[m]
    b0 = view.u8(p)
    ihl = (b0 & 15) * 4
    total = view.u16(p + 2)
    bad = ((b0 >> 4) != 4) | (ihl < 20) | ((total < ihl) & (total != 0))
    idx = np.flatnonzero(m)
    st.reason[idx[bad]] = 3
    st.reason[idx[~bad & (p + ihl > view.end[idx])]] = 1
    fo = view.u16(p + 6)
    st.version[idx], st.proto[idx], st.l4[idx] = 4, view.u8(p + 9), p + ihl
    st.ip_len[idx] = np.where(total == 0, view.end[idx] - p, total)
    st.frag[idx] = np.where((fo & 0x1FFF) != 0, 2, np.where((fo & 0x2000) != 0, 1, 0))
    st.src[idx] = ipv4_to_mapped(view.u32(p + 12))
    st.dst[idx] = ipv4_to_mapped(view.u32(p + 16))


def _ipv6(view: ByteView, st: _State, rows: np.ndarray, pos: np.ndarray) -> None:
    _fail(st, rows & ~view.has(pos, 40), 1)
    idx = np.flatnonzero(rows & (st.reason == 0))
    if not len(idx):
        return
    p = pos[idx]
    st.reason[idx[(view.u8(p) >> 4) != 6]] = 3
    plen = view.u16(p + 4)
    st.version[idx], st.proto[idx], st.l4[idx] = 6, view.u8(p + 6), p + 40
    st.ip_len[idx] = np.where(plen == 0, view.end[idx] - p, plen + 40)
    st.frag[idx] = 0
    st.src[idx], st.dst[idx] = view.block(p + 8, 16), view.block(p + 24, 16)
    for _ in range(8):
        m = rows & (st.reason == 0) & (st.version == 6) & isin(st.proto, _V6_EXT) & (st.frag != 2)
        _fail(st, m & ~view.has(st.l4, 8), 1)
        m &= st.reason == 0
        if not m.any():
            break
        q = st.l4[m]
        nh, hlen = view.u8(q), view.u8(q + 1)
        is_frag, is_ah = st.proto[m] == 44, st.proto[m] == 51
        fo = view.u16(q + 2)
        st.frag[m] = np.where(is_frag, np.where((fo & 0xFFF8) != 0, 2, np.where(fo & 1, 1, 0)), st.frag[m])
        st.l4[m] = q + np.where(is_frag, 8, np.where(is_ah, (hlen + 2) * 4, (hlen + 1) * 8))
        st.proto[m] = nh


def _ip_layer(view: ByteView, st: _State, rows: np.ndarray, pos: np.ndarray, et: np.ndarray) -> None:
    _fail(st, rows & (et != ETH_IPV4) & (et != ETH_IPV6), 2)
    st.sport[rows], st.dport[rows], st.flags[rows], st.payload[rows] = 0, 0, 0, 0
    _ipv4(view, st, rows & (et == ETH_IPV4) & (st.reason == 0), pos)
    _ipv6(view, st, rows & (et == ETH_IPV6) & (st.reason == 0), pos)
    st.ip_end[rows] = np.minimum(pos[rows] + st.ip_len[rows], view.end[rows])


def _transport(view: ByteView, st: _State, rows: np.ndarray) -> None:
    live = rows & (st.reason == 0) & (st.frag != 2)
    tcp, udp = live & (st.proto == 6), live & isin(st.proto, (17, 136))
    icmp = live & isin(st.proto, (1, 58))
    _fail(st, (tcp & ~view.has(st.l4, 20)) | (udp & ~view.has(st.l4, 8)) | (icmp & ~view.has(st.l4, 2)), 1)
    for m, hdr in ((tcp, None), (udp, 8), (icmp, 4)):
        m &= st.reason == 0
        q = st.l4[m]
        if hdr is None:
            st.sport[m], st.dport[m], st.flags[m] = view.u16(q), view.u16(q + 2), view.u8(q + 13) & 0x3F
            st.payload[m] = q + np.maximum((view.u8(q + 12) >> 4) * 4, 20)
        elif hdr == 8:
            st.sport[m], st.dport[m], st.payload[m] = view.u16(q), view.u16(q + 2), q + 8
        else:
            st.sport[m], st.dport[m], st.payload[m] = view.u8(q), view.u8(q + 1), q + 4
    other = rows & (st.reason == 0) & ~(tcp | udp | icmp)
    st.payload[other] = st.l4[other]
    st.sport[other], st.dport[other] = 0, 0


def _tunnels(view: ByteView, st: _State, rows: np.ndarray, enabled: frozenset[int]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows that carry an inner packet to decode next: (mask, inner position, inner ethertype)."""
    ok = rows & (st.reason == 0) & (st.frag == 0)
    pos, et = st.payload.copy(), np.zeros(len(ok), dtype=np.int64)
    inner = np.zeros(len(ok), dtype=bool)
    pl_len = st.ip_end - st.payload
    if TUNNEL_IPIP in enabled:
        m = ok & isin(st.proto, (4, 41))
        pos[m], et[m] = st.l4[m], np.where(st.proto[m] == 4, ETH_IPV4, ETH_IPV6)
        st.tunnel[m], inner = TUNNEL_IPIP, inner | m
    udp = ok & (st.proto == 17)
    if TUNNEL_GTP in enabled:
        m = udp & ((st.dport == 2152) | (st.sport == 2152)) & (pl_len >= 12)
        m &= ((view.u8(pos) >> 5) == 1) & (view.u8(pos + 1) == 0xFF)
        flags = view.u8(pos)
        pos[m] += np.where((flags[m] & 7) != 0, 12, 8)
        ext = m & ((flags & 4) != 0)
        for _ in range(3):
            nxt = ext & (view.u8(pos - 1) != 0)
            pos[nxt] += np.maximum(view.u8(pos[nxt]) * 4, 4)
            ext = nxt
        et[m] = ethertype_from_nibble(view, pos[m])
        st.tunnel[m], inner = TUNNEL_GTP, inner | m
    if TUNNEL_VXLAN in enabled:
        m = udp & (st.dport == 4789) & (pl_len >= 8 + 14) & ((view.u8(pos) & 0x08) != 0)
        et[m] = view.u16(pos[m] + 8 + 12)
        pos[m] += 8 + 14
        ethernet_tags(view, pos, et, np.zeros(len(ok), dtype=np.int64), m, np.zeros(len(ok), dtype=bool))
        st.tunnel[m], inner = TUNNEL_VXLAN, inner | m
    if TUNNEL_TEREDO in enabled:
        m = udp & ((st.dport == 3544) | (st.sport == 3544)) & (pl_len >= 40)
        q = pos.copy()
        auth = m & (view.u16(q) == 1)  # authentication indicator, then maybe an origin indication
        q[auth] += 13 + view.u8(q[auth] + 2) + view.u8(q[auth] + 3)
        q[m & (view.u16(q) == 0)] += 8  # origin indication
        m &= ((view.u8(q) >> 4) == 6) & view.has(q, 40) & (st.ip_end - q >= 40)
        pos[m], et[m] = q[m], ETH_IPV6
        st.tunnel[m], inner = TUNNEL_TEREDO, inner | m
    if TUNNEL_GRE in enabled:
        m = ok & (st.proto == 47) & view.has(st.l4, 4)
        gre = view.u16(st.l4)
        hlen = 4 + 4 * (((gre >> 15) & 1) + ((gre >> 13) & 1) + ((gre >> 12) & 1))
        ptype = view.u16(st.l4 + 2)
        m &= ((gre & 7) == 0) & isin(ptype, (ETH_IPV4, ETH_IPV6))
        pos[m], et[m] = st.l4[m] + hlen[m], ptype[m]
        st.tunnel[m], inner = TUNNEL_GRE, inner | m
    return inner, pos, et


def decode_packets(batch: PacketBatch, tunnels: frozenset[int] = ALL_TUNNELS) -> Decoded:
    """Decode every packet of ``batch``; skipped packets are counted by reason, never raised.

    The common packets are decoded by :func:`finsa.collectors.meter.decode_fast.decode_common`, the
    others (and their skip reasons) by the general layer-by-layer decoder.
    """
    common = decode_common(batch.data, batch.offset, batch.caplen, batch.linktype, tunnels)
    if common is None or not len(common[0]):
        return _decode_general(batch, tunnels)
    rows, cols = common
    if len(rows) == len(batch):
        for reason, count in batch.skipped.items():
            SKIPPED.inc(count, reason=reason)
        return Decoded(rows, skipped=dict(batch.skipped), **cols)
    rest = np.ones(len(batch), dtype=bool)
    rest[rows] = False
    rest = np.flatnonzero(rest)
    sub = PacketBatch(batch.data, batch.ts_ns[rest], batch.caplen[rest], batch.wirelen[rest],
                      batch.linktype[rest], batch.offset[rest], batch.skipped)
    other = _decode_general(sub, tunnels)
    return _merge(len(batch), rows, cols, rest[other.index], other)


def _merge(n: int, rows: np.ndarray, cols: dict[str, np.ndarray], other_rows: np.ndarray,
           other: Decoded) -> Decoded:
    """Columns of both decoders in packet order."""
    kept = np.zeros(n, dtype=bool)
    kept[rows] = kept[other_rows] = True
    at = np.cumsum(kept) - 1
    index = np.flatnonzero(kept)
    mine, theirs = at[rows], at[other_rows]
    out = {}
    for name, col in cols.items():
        theirs_col = getattr(other, name)
        if theirs_col is None:
            theirs_col = np.full(len(other_rows), -1, dtype=col.dtype)
        merged = np.empty((len(index),) + col.shape[1:], dtype=col.dtype)
        merged[mine], merged[theirs] = col, theirs_col
        out[name] = merged
    return Decoded(index, skipped=other.skipped, **out)


def _decode_general(batch: PacketBatch, tunnels: frozenset[int]) -> Decoded:
    """Layer by layer, with masks, for every kind of packet."""
    n = len(batch)
    end = batch.offset.astype(np.int64) + batch.caplen.astype(np.int64)
    view = ByteView(batch.data, end)
    pos, et, vlan, truncated, unsupported = link_layer(view, batch.offset, batch.linktype)
    st = _State(n)
    st.reason[truncated] = 1
    st.reason[unsupported] = 4
    rows = st.reason == 0
    for _depth in range(3):
        _ip_layer(view, st, rows, pos, et)
        _transport(view, st, rows)
        rows, pos, et = _tunnels(view, st, rows, tunnels)
        if not rows.any():
            break
    keep = np.flatnonzero(st.reason == 0)
    skipped = dict(batch.skipped)
    for code, count in zip(*np.unique(st.reason[st.reason > 0], return_counts=True)):
        skipped[_REASONS[code]] = skipped.get(_REASONS[code], 0) + int(count)
    for reason, count in skipped.items():
        SKIPPED.inc(count, reason=reason)
    payload = st.payload[keep]
    return Decoded(keep, st.version[keep].astype(np.uint8), st.proto[keep].astype(np.uint8),
                   st.src[keep], st.dst[keep], st.sport[keep].astype(np.uint16),
                   st.dport[keep].astype(np.uint16), vlan[keep].astype(np.uint16),
                   st.flags[keep].astype(np.uint8), st.ip_len[keep], payload,
                   np.maximum(st.ip_end[keep] - payload, 0), st.frag[keep].astype(np.uint8),
                   st.tunnel[keep].astype(np.uint8), skipped)
