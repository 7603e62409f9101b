"""UDP payloads of a capture of export packets: the input of flow-export replay and tests.

``export_datagrams(path)`` yields (source address, UDP payload, capture time in ms) for every
IPv4/IPv6 UDP packet of an Ethernet (802.1Q tags allowed), raw-IP or Linux cooked capture;
anything else (non-UDP, fragments, other link types) is passed over.
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path
from typing import Iterator

from finsa.collectors.pcap.capture import read_capture

__all__ = ["export_datagrams", "udp_payload"]

_ETHERNET, _RAW, _LINUX_SLL, _RAW4, _RAW6 = 1, 101, 113, 228, 229


def _ip_start(linktype: int, frame: bytes) -> int | None:
    if linktype in (_RAW, _RAW4, _RAW6):
        return 0
    if linktype == _LINUX_SLL:
        return 16 if len(frame) >= 16 else None
    if linktype != _ETHERNET or len(frame) < 14:
        return None
    pos = 12
    for _ in range(4):
        if len(frame) < pos + 2:
            return None
        ethertype = struct.unpack_from(">H", frame, pos)[0]
        if ethertype not in (0x8100, 0x88A8):
            return pos + 2 if ethertype in (0x0800, 0x86DD) else None
        pos += 4
    return None


def udp_payload(linktype: int, frame: bytes) -> tuple[str, bytes] | None:
    """(source address, UDP payload) of one captured frame, or None when it is not UDP."""
    pos = _ip_start(linktype, frame)
    if pos is None or len(frame) < pos + 20:
        return None
    version = frame[pos] >> 4
    if version == 4:
        ihl = (frame[pos] & 0x0F) * 4
        if frame[pos + 9] != 17 or struct.unpack_from(">H", frame, pos + 6)[0] & 0x3FFF:
            return None
        source, udp = str(ipaddress.IPv4Address(frame[pos + 12:pos + 16])), pos + ihl
    elif version == 6 and len(frame) >= pos + 48 and frame[pos + 6] == 17:
        source, udp = str(ipaddress.IPv6Address(frame[pos + 8:pos + 24])), pos + 40
    else:
        return None
    if len(frame) < udp + 8:
        return None
    length = struct.unpack_from(">H", frame, udp + 4)[0]
    return source, frame[udp + 8:udp + max(length, 8)]


def export_datagrams(path: str | Path) -> Iterator[tuple[str, bytes, int]]:
    """(source address, UDP payload, capture time ms) for each UDP packet of a capture."""
    for batch in read_capture(path):
        for i in range(len(batch)):
            found = udp_payload(int(batch.linktype[i]), batch.packet(i))
            if found is not None:
                yield found[0], found[1], int(batch.ts_ns[i]) // 1_000_000
