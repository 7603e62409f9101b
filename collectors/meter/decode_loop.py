"""The packet decoder as one compiled loop: link layer, IPv4/IPv6, TCP/UDP/ICMP and tunnels.

:func:`decode_loop` walks the packets of a batch once, each packet's headers layer by layer
(:func:`finsa.collectors.meter.linklayer.link_layer`, then up to three IP layers, the transport
header and the tunnel that may carry the next layer: IP-in-IP and 6in4, GTP-U, VXLAN, Teredo,
GRE, as enabled), and writes the columns of the packets it keeps, in packet order, plus the
count of the packets skipped by reason. It is a :func:`finsa.collectors.compiled.kernel`: the
wrapper :func:`finsa.collectors.meter.decode.decode_packets` gives it the batch's arrays.

Reads past a packet's captured bytes are never used: every field is read only after its header
was found whole before the packet's end (``has`` below); the first four and the sixth payload
bytes (``head``) are packed as ``head << 9 | (sixth + 1)`` with 0 and -1 where not captured.
"""

from __future__ import annotations

import numpy as np

from finsa.collectors.compiled import carray, helper, kernel, prefetch
from finsa.collectors.meter.linklayer import ETH_IPV4, ETH_IPV6, ethernet_tags, ethertype_from_nibble, link_layer, u8, u16

__all__ = ["decode_loop", "OUTPUTS", "TUNNEL_BITS"]

#: output columns of the kernel, in its argument order, and their dtypes (16 bytes a row for addresses)
OUTPUTS = (("index", np.int64), ("ip_version", np.uint8), ("protocol", np.uint8), ("src_ip", np.uint8),
           ("dst_ip", np.uint8), ("src_port", np.uint16), ("dst_port", np.uint16), ("vlan_id", np.uint16),
           ("tcp_flags", np.uint8), ("ip_bytes", np.int64), ("payload_offset", np.int64),
           ("payload_bytes", np.int64), ("fragment", np.uint8), ("tunnel_kind", np.uint8), ("payload_head", np.int64))
#: tunnel kind (finsa.collectors.meter.decode's codes 1..5) -> bit of the kernel's ``tunnels`` argument
TUNNEL_BITS = {1: 1, 2: 2, 3: 4, 4: 8, 5: 16}
_GRE, _VXLAN, _IPIP, _GTP, _TEREDO = 1, 2, 3, 4, 5
_TRUNCATED, _NON_IP, _BAD_IP = 1, 2, 3
_AHEAD = 8  # packets: a packet's first bytes are prefetched this many packets before it is decoded


@helper
def _ipv4(buf, pos, end):
    """(reason, protocol, l4 position, ip length, fragment) of the IPv4 header at ``pos``."""
    if pos + 20 > end:
        return _TRUNCATED, 0, 0, 0, 0
    b0 = u8(buf, pos)
    ihl = (b0 & 15) * 4
    total = u16(buf, pos + 2)
    if (b0 >> 4) != 4 or ihl < 20 or (total < ihl and total != 0):
        return _BAD_IP, 0, 0, 0, 0
    if pos + ihl > end:
        return _TRUNCATED, 0, 0, 0, 0
    fo = u16(buf, pos + 6)
    frag = 2 if (fo & 0x1FFF) != 0 else (1 if (fo & 0x2000) != 0 else 0)
    return 0, u8(buf, pos + 9), pos + ihl, (end - pos if total == 0 else total), frag


@helper
def _ipv6(buf, pos, end):
    """(reason, protocol, l4 position, ip length, fragment) of the IPv6 header at ``pos``,
    extension headers skipped."""
    if pos + 40 > end:
        return _TRUNCATED, 0, 0, 0, 0
    if (u8(buf, pos) >> 4) != 6:
        return _BAD_IP, 0, 0, 0, 0
    plen = u16(buf, pos + 4)
    proto, l4, frag = u8(buf, pos + 6), pos + 40, 0
    for _ in range(8):
        if frag == 2 or proto not in (0, 43, 60, 135, 139, 140, 44, 51):
            break
        if l4 + 8 > end:
            return _TRUNCATED, 0, 0, 0, 0
        nh, hlen = u8(buf, l4), u8(buf, l4 + 1)
        if proto == 44:
            fo = u16(buf, l4 + 2)
            frag = 2 if (fo & 0xFFF8) != 0 else (1 if (fo & 1) != 0 else 0)
            l4 += 8
        elif proto == 51:
            l4 += (hlen + 2) * 4
        else:
            l4 += (hlen + 1) * 8
        proto = nh
    return 0, proto, l4, (end - pos if plen == 0 else plen + 40), frag


@helper
def _transport(buf, l4, end, proto, frag):
    """(reason, source port or ICMP type, destination port or code, TCP flags, payload position)."""
    if frag != 2 and proto == 6:
        if l4 + 20 > end:
            return _TRUNCATED, 0, 0, 0, 0
        return 0, u16(buf, l4), u16(buf, l4 + 2), u8(buf, l4 + 13) & 0x3F, l4 + max((u8(buf, l4 + 12) >> 4) * 4, 20)
    if frag != 2 and (proto == 17 or proto == 136):
        if l4 + 8 > end:
            return _TRUNCATED, 0, 0, 0, 0
        return 0, u16(buf, l4), u16(buf, l4 + 2), 0, l4 + 8
    if frag != 2 and (proto == 1 or proto == 58):
        if l4 + 2 > end:
            return _TRUNCATED, 0, 0, 0, 0
        return 0, u8(buf, l4), u8(buf, l4 + 1), 0, l4 + 4
    return 0, 0, 0, 0, l4


@helper
def _udp_tunnel(buf, pos, end, sport, dport, pl_len, ip_end, tunnels, kind, et):
    """GTP-U, VXLAN, Teredo in a UDP payload at ``pos``: (inner position, ethertype, tunnel kind),
    ``kind`` 0 when none. Tested in this order, each from where the one before left ``pos``."""
    if (tunnels & 8) and (dport == 2152 or sport == 2152) and pl_len >= 12:
        flags = u8(buf, pos)
        if (flags >> 5) == 1 and u8(buf, pos + 1) == 0xFF:
            pos += 12 if (flags & 7) != 0 else 8
            if (flags & 4) != 0:
                for _ in range(3):
                    if u8(buf, pos - 1) == 0:
                        break
                    pos += max(u8(buf, pos) * 4, 4)
            et, kind = ethertype_from_nibble(buf, pos), _GTP
    if (tunnels & 2) and dport == 4789 and pl_len >= 8 + 14 and (u8(buf, pos) & 0x08) != 0:
        pos, et, _vlan, _cut = ethernet_tags(buf, pos + 8 + 14, end, u16(buf, pos + 8 + 12), 0)
        kind = _VXLAN
    if (tunnels & 16) and (dport == 3544 or sport == 3544) and pl_len >= 40:
        q = pos
        if u16(buf, q) == 1:  # authentication indicator, then maybe an origin indication
            q += 13 + u8(buf, q + 2) + u8(buf, q + 3)
        if u16(buf, q) == 0:  # origin indication
            q += 8
        if (u8(buf, q) >> 4) == 6 and q + 40 <= end and ip_end - q >= 40:
            pos, et, kind = q, ETH_IPV6, _TEREDO
    return pos, et, kind


@helper
def _gre(buf, l4, end):
    """(inner position, ethertype) of a GRE payload, ethertype 0 when not IPv4/IPv6 or not plain GRE."""
    if l4 + 4 > end:
        return 0, 0
    gre = u16(buf, l4)
    hlen = 4 + 4 * (((gre >> 15) & 1) + ((gre >> 13) & 1) + ((gre >> 12) & 1))
    ptype = u16(buf, l4 + 2)
    if (gre & 7) != 0 or (ptype != ETH_IPV4 and ptype != ETH_IPV6):
        return 0, 0
    return l4 + hlen, ptype


@helper
def _head(buf, payload, avail):
    """First four payload bytes (0 when fewer) and the sixth (-1 when absent), packed."""
    head = 0
    if avail >= 4:
        head = (u8(buf, payload) << 24) | (u8(buf, payload + 1) << 16) | (u8(buf, payload + 2) << 8) \
            | u8(buf, payload + 3)
    sixth = u8(buf, payload + 5) if avail >= 6 else -1
    return (head << 9) | (sixth + 1)


@helper
def _address(buf, at, v6, out, row):
    """Write the address at ``at`` into row ``row`` of the (n, 16) ``out``: 16 bytes, or IPv4-mapped."""
    if v6:
        for j in range(16):
            out[row * 16 + j] = u8(buf, at + j)
        return
    for j in range(10):
        out[row * 16 + j] = 0
    out[row * 16 + 10] = 0xFF
    out[row * 16 + 11] = 0xFF
    for j in range(4):
        out[row * 16 + 12 + j] = u8(buf, at + j)


@kernel("i64(u8*, i64, i64*, i64*, u16*, i64, i64, i64*, u8*, u8*, u8*, u8*, u16*, u16*, u16*, u8*, i64*, i64*, "
        "i64*, u8*, u8*, i64*, i64*)")
def decode_loop(buf_p, buf_n, off_p, cap_p, link_p, n, tunnels, index_p, version_p, proto_p, src_p, dst_p,
                sport_p, dport_p, vlan_p, flags_p, iplen_p, payload_p, plbytes_p, frag_p, tunnel_p, head_p,
                skipped_p):
    """Decode ``n`` packets; returns how many were kept (their columns fill the outputs' first rows).

    ``tunnels``: bits of :data:`TUNNEL_BITS`; ``skipped`` (5 counters) counts the packets left
    out by reason code (1 truncated, 2 non-IP, 3 bad IP header, 4 unsupported link type).
    """
    buf, offset, caplen, linktype = carray(buf_p, buf_n), carray(off_p, n), carray(cap_p, n), carray(link_p, n)
    index, version, protocol, vlan_id = carray(index_p, n), carray(version_p, n), carray(proto_p, n), carray(vlan_p, n)
    src, dst, sports, dports = carray(src_p, n * 16), carray(dst_p, n * 16), carray(sport_p, n), carray(dport_p, n)
    tcp_flags, ip_bytes, payloads, payload_bytes = carray(flags_p, n), carray(iplen_p, n), carray(payload_p, n), \
        carray(plbytes_p, n)
    fragment, tunnel_kind, heads, skipped = carray(frag_p, n), carray(tunnel_p, n), carray(head_p, n), \
        carray(skipped_p, 5)
    k = 0
    for i in range(n):
        if i + _AHEAD < n:
            prefetch(buf, offset[i + _AHEAD])
            prefetch(buf, offset[i + _AHEAD] + 63)
        end = offset[i] + caplen[i]
        pos, et, vlan, reason = link_layer(buf, offset[i], end, linktype[i])
        ip_at, proto, ip_len, ip_end, frag, tunnel, v6 = pos, 0, 0, 0, 0, 0, False
        sport, dport, flags, payload = 0, 0, 0, 0
        depth = 0
        while reason == 0 and depth < 3:
            depth += 1
            if et != ETH_IPV4 and et != ETH_IPV6:
                reason = _NON_IP
                break
            v6, ip_at = et == ETH_IPV6, pos
            if v6:
                reason, proto, l4, ip_len, frag = _ipv6(buf, pos, end)
            else:
                reason, proto, l4, ip_len, frag = _ipv4(buf, pos, end)
            if reason != 0:
                break
            ip_end = min(pos + ip_len, end)
            reason, sport, dport, flags, payload = _transport(buf, l4, end, proto, frag)
            if reason != 0 or frag != 0:
                break
            kind, et = 0, 0
            if (tunnels & 4) and (proto == 4 or proto == 41):
                pos, et, kind = l4, (ETH_IPV4 if proto == 4 else ETH_IPV6), _IPIP
            elif proto == 17:
                pos, et, kind = _udp_tunnel(buf, payload, end, sport, dport, ip_end - payload, ip_end, tunnels, 0, 0)
            elif (tunnels & 1) and proto == 47:
                pos, et = _gre(buf, l4, end)
                kind = _GRE if et != 0 else 0
            if kind == 0:
                break
            tunnel = kind
        if reason != 0:
            skipped[reason] += 1
            continue
        index[k], version[k], protocol[k], vlan_id[k], fragment[k], tunnel_kind[k] = i, 6 if v6 else 4, proto, \
            vlan, frag, tunnel
        _address(buf, ip_at + (8 if v6 else 12), v6, src, k)
        _address(buf, ip_at + (24 if v6 else 16), v6, dst, k)
        sports[k], dports[k], tcp_flags[k], ip_bytes[k], payloads[k] = sport, dport, flags, ip_len, payload
        payload_bytes[k] = max(ip_end - payload, 0)
        heads[k] = _head(buf, payload, ip_end - payload)
        k += 1
    return k
