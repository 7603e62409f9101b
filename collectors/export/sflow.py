"""sFlow v5 datagrams: one flow record per flow sample, scaled by its sampling rate.

Flow samples (format 1) and expanded flow samples (format 3) are read; their raw packet header
record (Ethernet, IPv4 or IPv6, with 802.1Q tags and IPv6 extension headers skipped) gives the
addresses, ports, protocol, TCP flags and IP length, or, without one, the sampled IPv4/IPv6
records do. A sample stands for ``sampling_rate`` packets of its IP length in bytes (like
NetFlow's L3 octet counts; the frame length when no IP length is known). The VLAN is the
innermost 802.1Q tag of the sampled frame, else the extended switch record's source (then
destination) VLAN. sFlow carries no flow times: first and last seen are the arrival time.
Counter samples (formats 2 and 4) are counted and skipped; other enterprises are ignored.

>>> head = struct.pack(">IIIIIII", 5, 1, 0xC0000201, 0, 1, 1000, 0)  # no samples
>>> rows = []
>>> decode_sflow(head, 0, rows), rows
(0, [])
"""

from __future__ import annotations

import struct

from finsa.collectors.export import metrics as m
__all__ = ["decode_sflow", "parse_sampled_header", "SFLOW_ROW_FIELDS"]

#: The order of the values in each row :func:`decode_sflow` appends.
SFLOW_ROW_FIELDS = ("first_seen_ms", "ip_version", "protocol", "vlan_id", "src_ip", "dst_ip",
                    "src_port", "dst_port", "src2dst_packets", "src2dst_bytes", "src2dst_tcp_flags")
MAX_SAMPLES = 1024
MAX_RECORDS = 256
_U32 = struct.Struct(">I")
_U32X2 = struct.Struct(">II")
_V4_PREFIX = bytes(10) + b"\xff\xff"
_V6_EXT = (0, 43, 60, 135, 139, 140)
_Header = tuple  # (ip_version, protocol, vlan, src16, dst16, sport, dport, flags, ip_bytes)


def _transport(proto: int, pkt: bytes, pos: int, fragment: bool) -> tuple[int, int, int]:
    if fragment:
        return 0, 0, 0
    if proto in (6, 17, 132) and len(pkt) >= pos + 4:
        sport, dport = struct.unpack_from(">HH", pkt, pos)
        flags = pkt[pos + 13] if proto == 6 and len(pkt) > pos + 13 else 0
        return sport, dport, flags
    if proto in (1, 58) and len(pkt) >= pos + 2:
        return pkt[pos], pkt[pos + 1], 0
    return 0, 0, 0


def _ipv4(pkt: bytes, pos: int, vlan: int) -> _Header | None:
    if len(pkt) < pos + 20 or pkt[pos] >> 4 != 4:
        return None
    ihl = (pkt[pos] & 0x0F) * 4
    proto = pkt[pos + 9]
    fragment = (struct.unpack_from(">H", pkt, pos + 6)[0] & 0x1FFF) != 0
    ports = _transport(proto, pkt, pos + max(ihl, 20), fragment)
    ip_bytes = struct.unpack_from(">H", pkt, pos + 2)[0]
    return (4, proto, vlan, _V4_PREFIX + pkt[pos + 12:pos + 16], _V4_PREFIX + pkt[pos + 16:pos + 20]) + ports + (ip_bytes,)


def _ipv6(pkt: bytes, pos: int, vlan: int) -> _Header | None:
    if len(pkt) < pos + 40 or pkt[pos] >> 4 != 6:
        return None
    src, dst = pkt[pos + 8:pos + 24], pkt[pos + 24:pos + 40]
    ip_bytes = struct.unpack_from(">H", pkt, pos + 4)[0] + 40
    proto, pos, fragment = pkt[pos + 6], pos + 40, False
    for _ in range(8):
        if proto not in _V6_EXT and proto != 44:
            break
        if len(pkt) < pos + 8:
            return (6, proto, vlan, src, dst, 0, 0, 0, ip_bytes)
        if proto == 44:
            fragment = (struct.unpack_from(">H", pkt, pos + 2)[0] & 0xFFF8) != 0
            proto, pos = pkt[pos], pos + 8
        else:
            proto, pos = pkt[pos], pos + (pkt[pos + 1] + 1) * 8
    return (6, proto, vlan, src, dst) + _transport(proto, pkt, pos, fragment) + (ip_bytes,)


def parse_sampled_header(header_protocol: int, pkt: bytes) -> _Header | None:
    """(ip version, protocol, vlan, src 16, dst 16 bytes, sport, dport, tcp flags, ip length) or None."""
    if header_protocol == 11:
        return _ipv4(pkt, 0, 0)
    if header_protocol == 12:
        return _ipv6(pkt, 0, 0)
    if header_protocol != 1 or len(pkt) < 14:
        return None
    pos, vlan = 12, 0
    ethertype = struct.unpack_from(">H", pkt, pos)[0]
    for _ in range(4):
        if ethertype not in (0x8100, 0x88A8, 0x9100) or len(pkt) < pos + 6:
            break
        vlan = struct.unpack_from(">H", pkt, pos + 2)[0] & 0x0FFF
        ethertype, pos = struct.unpack_from(">H", pkt, pos + 4)[0], pos + 4
    if ethertype == 0x0800:
        return _ipv4(pkt, pos + 2, vlan)
    if ethertype == 0x86DD:
        return _ipv6(pkt, pos + 2, vlan)
    return None


def _records(data: bytes, pos: int, end: int, count: int) -> tuple[_Header | None, int, tuple[int, int]]:
    """Walk a sample's flow records: (header fields, frame length, (src vlan, dst vlan))."""
    found: _Header | None = None
    frame_length, switch = 0, (0, 0)
    for _ in range(min(count, MAX_RECORDS)):
        if end - pos < 8:
            break
        fmt, length = _U32X2.unpack_from(data, pos)
        body, pos = pos + 8, pos + 8 + length
        if pos > end:
            raise ValueError("truncated_record")
        if fmt == 1 and length >= 16:
            proto, frame_length, _stripped, hlen = struct.unpack_from(">IIII", data, body)
            found = parse_sampled_header(proto, bytes(data[body + 16:body + 16 + min(hlen, length - 16)])) or found
        elif fmt in (3, 4) and found is None and length >= (28 if fmt == 3 else 52):
            alen = 4 if fmt == 3 else 16
            size, proto = _U32X2.unpack_from(data, body)
            src, dst = data[body + 8:body + 8 + alen], data[body + 8 + alen:body + 8 + 2 * alen]
            sport, dport, flags = struct.unpack_from(">III", data, body + 8 + 2 * alen)
            pre = _V4_PREFIX if alen == 4 else b""
            found = (4 if alen == 4 else 6, proto & 0xFF, 0, pre + bytes(src), pre + bytes(dst),
                     sport & 0xFFFF, dport & 0xFFFF, flags & 0xFF, size)
        elif fmt == 1001 and length >= 16:
            src_vlan, _, dst_vlan, _ = struct.unpack_from(">IIII", data, body)
            switch = (src_vlan if 0 < src_vlan < 4095 else 0, dst_vlan if 0 < dst_vlan < 4095 else 0)
    return found, frame_length, switch


def _flow_sample(data: bytes, pos: int, end: int, expanded: bool, received_ms: int, rows: list) -> bool:
    head = 44 if expanded else 32
    if end - pos < head:
        raise ValueError("truncated_sample")
    rate = _U32.unpack_from(data, pos + (12 if expanded else 8))[0]
    count = _U32.unpack_from(data, pos + head - 4)[0]
    found, frame_length, (src_vlan, dst_vlan) = _records(data, pos + head, end, count)
    if found is None:
        m.skip("sflow_sample_without_header")
        return False
    version, proto, vlan, src, dst, sport, dport, flags, ip_bytes = found
    rate = max(rate, 1)
    rows.append((received_ms, version, proto, vlan or src_vlan or dst_vlan, src, dst, sport, dport,
                 rate, (ip_bytes or frame_length) * rate, flags))
    return True


def decode_sflow(data: bytes, received_ms: int, rows: list) -> int:
    """Append one row per flow sample of an sFlow v5 datagram to ``rows``; the number added.

    Raises ValueError (reason as message) on a malformed datagram; rows of samples decoded
    before the problem stay.
    """
    if len(data) < 8:
        raise ValueError("truncated_header")
    version, addr_type = _U32X2.unpack_from(data, 0)
    if version != 5 or addr_type not in (1, 2):
        raise ValueError("bad_version")
    pos = 8 + (4 if addr_type == 1 else 16)
    if len(data) < pos + 16:
        raise ValueError("truncated_header")
    n_samples = _U32.unpack_from(data, pos + 12)[0]
    pos += 16
    added = 0
    for _ in range(min(n_samples, MAX_SAMPLES)):
        if len(data) - pos < 8:
            raise ValueError("truncated_sample")
        fmt, length = _U32X2.unpack_from(data, pos)
        body, pos = pos + 8, pos + 8 + length
        if pos > len(data):
            raise ValueError("truncated_sample")
        if fmt in (1, 3):
            added += _flow_sample(data, body, pos, fmt == 3, received_ms, rows)
        elif fmt in (2, 4):
            m.SFLOW_COUNTER_SAMPLES.inc()
    return added
