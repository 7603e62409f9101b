"""The common case of packet decoding, from one gather of each packet's first bytes.

Most packets are Ethernet (untagged or one 802.1Q tag) carrying an IPv4 header without options or
an IPv6 header without extension headers, then TCP, UDP or ICMP, unfragmented and not a tunnel
candidate. :func:`decode_common` copies the first ``HEAD_BYTES`` of every packet into one
``(n, HEAD_BYTES)`` matrix with a single gather (the packet bytes are touched once, not once per
field) and decodes those packets with column reads; it returns which rows it decoded, and
:func:`finsa.collectors.meter.decode.decode_packets` sends the others through the general decoder. The
columns are exactly what the general decoder gives for those packets.
"""

from __future__ import annotations

import numpy as np

__all__ = ["decode_common", "HEAD_BYTES"]

HEAD_BYTES = 96
_TUNNEL_GTP, _TUNNEL_VXLAN, _TUNNEL_TEREDO = 4, 2, 5  # finsa.collectors.meter.decode's codes


def _be16(m: np.ndarray, at: int) -> np.ndarray:
    """The big-endian 16-bit column of the (n, HEAD_BYTES) matrix ``m`` at byte ``at``, as native uint16
    (widen before adding to it)."""
    if not len(m):
        return np.zeros(0, dtype=np.uint16)
    return np.ndarray((len(m),), dtype=">u2", buffer=m, offset=at, strides=(m.strides[0],)).astype(np.uint16)


def _heads(data, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    raw = np.frombuffer(data, dtype=np.uint8) if len(data) >= HEAD_BYTES else None
    if raw is None:
        return None
    view = np.ndarray((len(raw) - HEAD_BYTES + 1,), dtype=f"V{HEAD_BYTES}", buffer=raw, strides=(1,))
    inside = offset <= len(raw) - HEAD_BYTES
    m = view[np.where(inside, offset, 0)].view(np.uint8).reshape(-1, HEAD_BYTES)
    return m, inside


def _untag(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(matrix with a single 802.1Q tag removed, tag shift in bytes, vlan id)."""
    et = _be16(m, 12)
    inner = _be16(m, 16)
    tagged = (et == 0x8100) & ((inner == 0x0800) | (inner == 0x86DD))
    vlan = np.zeros(len(m), dtype=np.int64)
    if tagged.any():
        vlan[tagged] = _be16(m[tagged], 14) & 0x0FFF
        m = m.copy()
        m[tagged, 12:HEAD_BYTES - 4] = m[tagged, 16:]
    return m, np.where(tagged, 4, 0), vlan


def decode_common(data, offset: np.ndarray, caplen: np.ndarray, linktype: np.ndarray,
                  tunnels: frozenset[int]) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """(rows decoded here, their Decoded columns), or None when the batch is too small to gather."""
    got = _heads(data, offset)
    if got is None:
        return None
    m, inside = got
    m, shift, vlan = _untag(m)
    et = _be16(m, 12)
    end = caplen - shift  # captured bytes, measured in the untagged matrix
    v4 = (et == 0x0800) & (m[:, 14] == 0x45) & (end >= 34)
    total, fo = _be16(m, 16), _be16(m, 20)
    v4 &= (total >= 20) & ((fo & 0x3FFF) == 0)
    v6 = (et == 0x86DD) & ((m[:, 14] >> 4) == 6) & (end >= 54)
    plen = _be16(m, 18)
    v6 &= plen != 0
    any6 = bool(v6.any())
    proto = _pick(v6, any6, m[:, 20], m[:, 23]).astype(np.int64)
    l4 = _pick(v6, any6, 54, 34)
    tcp, udp = proto == 6, (proto == 17) | (proto == 136)
    icmp = (proto == 1) | (proto == 58)
    ok = inside & (linktype == 1) & (v4 | v6)
    ok &= (tcp & (end >= l4 + 20)) | (udp & (end >= l4 + 8)) | (icmp & (end >= l4 + 2))
    if any6:
        sport, dport = np.where(v6, _be16(m, 54), _be16(m, 34)), np.where(v6, _be16(m, 56), _be16(m, 36))
    else:
        sport, dport = _be16(m, 34), _be16(m, 36)
    if tunnels:
        ok &= ~(udp & _tunnel_ports(sport, dport, tunnels))
    rows = np.flatnonzero(ok)
    if not len(rows):
        return rows, {}
    cols = (m, offset + shift, end, v6, proto, l4, sport, dport, vlan, total, plen)
    if len(rows) < len(ok):
        cols = tuple(np.take(c, rows, axis=0) for c in cols)  # type: ignore[assignment]  # the same eleven columns, gathered
    return rows, _columns(*cols)


def _pick(v6: np.ndarray, any6: bool, if6, if4) -> np.ndarray:
    """``np.where(v6, if6, if4)`` as an array, skipped when no row is IPv6 (``any6`` False)."""
    if any6:
        return np.where(v6, if6, if4)
    return if4 if isinstance(if4, np.ndarray) else np.full(len(v6), if4)


def _tunnel_ports(sport: np.ndarray, dport: np.ndarray, tunnels: frozenset[int]) -> np.ndarray:
    """UDP packets the general decoder may open as a tunnel."""
    out = np.zeros(len(sport), dtype=bool)
    if _TUNNEL_GTP in tunnels:
        out |= (sport == 2152) | (dport == 2152)
    if _TUNNEL_VXLAN in tunnels:
        out |= dport == 4789
    if _TUNNEL_TEREDO in tunnels:
        out |= (sport == 3544) | (dport == 3544)
    return out


def _columns(m: np.ndarray, base: np.ndarray, end: np.ndarray, v6: np.ndarray, proto: np.ndarray,
             l4: np.ndarray, sport: np.ndarray, dport: np.ndarray, vlan: np.ndarray, total: np.ndarray,
             plen: np.ndarray) -> dict[str, np.ndarray]:
    """Decoded columns of the rows kept; ``base`` is where the untagged matrix starts in the buffer."""
    n = len(m)
    any6 = bool(v6.any())
    tcp, icmp = proto == 6, (proto == 1) | (proto == 58)
    flags = _pick(v6, any6, m[:, 67], m[:, 47]) & 0x3F
    doff = (_pick(v6, any6, m[:, 66], m[:, 46]) >> 4).astype(np.int64) * 4
    hdr = np.where(tcp, np.maximum(doff, 20), np.where(icmp, 4, 8))
    if icmp.any():
        sport = np.where(icmp, _pick(v6, any6, m[:, 54], m[:, 34]), sport)
        dport = np.where(icmp, _pick(v6, any6, m[:, 55], m[:, 35]), dport)
    src, dst = _address(m, v6, 26, 22), _address(m, v6, 30, 38)
    ip_len = _pick(v6, any6, plen.astype(np.int64) + 40, total.astype(np.int64))
    ip_end = np.minimum(14 + ip_len, end)
    payload = l4 + hdr
    return {
        "ip_version": _pick(v6, any6, 6, 4).astype(np.uint8), "protocol": proto.astype(np.uint8),
        "src_ip": src, "dst_ip": dst, "src_port": sport.astype(np.uint16), "dst_port": dport.astype(np.uint16),
        "vlan_id": vlan.astype(np.uint16), "tcp_flags": np.where(tcp, flags, 0).astype(np.uint8),
        "ip_bytes": ip_len, "payload_offset": base + payload, "payload_bytes": np.maximum(ip_end - payload, 0),
        "fragment": np.zeros(n, dtype=np.uint8), "tunnel_kind": np.zeros(n, dtype=np.uint8),
        "payload_head": _payload_head(m, payload, ip_end - payload),
    }


def _address(m: np.ndarray, v6: np.ndarray, at4: int, at6: int) -> np.ndarray:
    """(n, 16) addresses: IPv4-mapped from the four bytes at ``at4``, or the 16 at ``at6`` for IPv6 rows.

    The mapped form is written as two little-endian 64-bit words per row (``::ffff:`` and the
    IPv4 bytes), not byte column by byte column.
    """
    n = len(m)
    words = np.zeros((n, 2), dtype="<u8")
    v4 = np.ndarray((n,), dtype="<u4", buffer=m, offset=at4, strides=(m.strides[0],))
    words[:, 1] = (v4.astype("<u8") << np.uint64(32)) | np.uint64(0xFFFF0000)
    out = words.view(np.uint8)
    if v6.any():
        rows = np.flatnonzero(v6)
        col = np.ndarray((n,), dtype="V16", buffer=m, offset=at6, strides=(m.strides[0],))
        out.view("V16")[rows, 0] = col[rows]
    return out


def _payload_head(m: np.ndarray, payload: np.ndarray, avail: np.ndarray) -> np.ndarray:
    """First four payload bytes (big-endian; 0 when fewer) and the sixth byte (-1 when absent) packed
    as ``head << 9 | (sixth + 1)``; -1 where the bytes lie beyond the gathered head."""
    flat = np.ascontiguousarray(m).reshape(-1)
    at = np.arange(0, flat.size, HEAD_BYTES) + np.minimum(payload, HEAD_BYTES - 6)
    four = np.ndarray((flat.size - 3,), dtype=">u4", buffer=flat, strides=(1,))[at].astype(np.int64)
    head = np.where(avail >= 4, four, 0)
    sixth = np.where(avail >= 6, flat[at + 5].astype(np.int64), -1)
    return np.where(payload <= HEAD_BYTES - 6, (head << 9) | (sixth + 1), -1)
