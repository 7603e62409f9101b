"""Link layers of one packet, for the compiled decoder: where its IP header starts.

:func:`link_layer` handles Ethernet with 802.1Q/802.1ad/Q-in-Q tags, PPPoE sessions and MPLS,
Linux SLL and SLL2, raw IP and BSD loopback, and gives the IP header position, an
ethertype-like code (0x0800 IPv4, 0x86DD IPv6) and the innermost VLAN id. These are
:func:`finsa.collectors.compiled.helper` functions: compiled into
:func:`finsa.collectors.meter.decode_loop.decode_loop`, and plain Python when called directly.
Reads past the buffer's end give its last byte (callers check lengths against the packet's end).

>>> import numpy as np
>>> frame = np.frombuffer(bytes(12) + b"\\x81\\x00\\x00\\x2a\\x08\\x00" + bytes(20), dtype=np.uint8)
>>> [int(v) for v in link_layer(frame, 0, len(frame), 1)]  # ip position, ethertype, vlan, reason (0: ok)
[18, 2048, 42, 0]
"""

from __future__ import annotations

import numpy as np

from finsa.collectors.compiled import helper

__all__ = ["ETH_IPV4", "ETH_IPV6", "link_layer", "ethernet_tags", "u8", "u16", "ethertype_from_nibble",
           "REASON_TRUNCATED", "REASON_UNSUPPORTED_LINK"]

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
REASON_TRUNCATED, REASON_UNSUPPORTED_LINK = 1, 4  # codes of finsa.collectors.meter.decode's skip reasons


@helper
def u8(buf, pos):
    """The byte at ``pos`` (the buffer's last byte beyond its end)."""
    last = len(buf) - 1
    return np.int64(buf[pos if pos < last else last])


@helper
def u16(buf, pos):
    """The big-endian 16-bit integer at ``pos``."""
    return (u8(buf, pos) << 8) | u8(buf, pos + 1)


@helper
def ethertype_from_nibble(buf, pos):
    """IPv4 or IPv6 by the version nibble at ``pos``, else 0."""
    nibble = u8(buf, pos) >> 4
    return 0x0800 if nibble == 4 else (0x86DD if nibble == 6 else 0)


@helper
def ethernet_tags(buf, pos, end, et, vlan):
    """Skip VLAN tags, a PPPoE session header and MPLS labels: (pos, ethertype, vlan, truncated)."""
    for _ in range(4):
        if et != 0x8100 and et != 0x88A8 and et != 0x9100:
            break
        if pos + 4 > end:
            return pos, et, vlan, True
        vlan = u16(buf, pos) & 0x0FFF
        et = u16(buf, pos + 2)
        pos += 4
    if et == 0x8864:
        if pos + 8 > end:
            return pos, et, vlan, True
        ppp = u16(buf, pos + 6)
        et = 0x0800 if ppp == 0x21 else (0x86DD if ppp == 0x57 else 0)
        pos += 8
    if et == 0x8847 or et == 0x8848:
        bottom = False
        for _ in range(6):
            if pos + 4 > end:
                return pos, et, vlan, True
            bottom = (u8(buf, pos + 2) & 1) == 1
            pos += 4
            if bottom:
                et = ethertype_from_nibble(buf, pos)
                break
        if not bottom:
            et = 0
    return pos, et, vlan, False


@helper
def link_layer(buf, pos, end, linktype):
    """(IP header position, ethertype code, vlan id, skip reason: 0, truncated or unsupported link)."""
    et = 0
    vlan = 0
    if linktype == 1 or linktype == 113 or linktype == 276:
        header, et_at = (14, 12) if linktype == 1 else ((16, 14) if linktype == 113 else (20, 0))
        if pos + header > end:
            return pos, et, vlan, REASON_TRUNCATED
        et = u16(buf, pos + et_at)
        pos += header
        if linktype != 276:
            pos, et, vlan, truncated = ethernet_tags(buf, pos, end, et, vlan)
            if truncated:
                return pos, et, vlan, REASON_TRUNCATED
    elif linktype == 0 or linktype == 108:
        if pos + 4 > end:
            return pos, et, vlan, REASON_TRUNCATED
        family = max(u8(buf, pos), u8(buf, pos + 3))
        et = 0x0800 if family == 2 else (0x86DD if family in (10, 24, 28, 30) else 0)
        pos += 4
    elif linktype in (12, 14, 101, 228, 229):
        if pos + 1 > end:
            return pos, et, vlan, REASON_TRUNCATED
        et = ethertype_from_nibble(buf, pos)
    else:
        return pos, et, vlan, REASON_UNSUPPORTED_LINK
    return pos, et, vlan, 0
