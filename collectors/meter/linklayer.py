"""Link layers of a PacketBatch, vectorised: where each packet's IP header starts.

:class:`ByteView` gathers big-endian integers at per-packet positions of the batch buffer (out of
range reads give 0; callers check lengths with ``has``). :func:`link_layer` handles Ethernet with
802.1Q/802.1ad/Q-in-Q tags, PPPoE sessions and MPLS, Linux SLL and SLL2, raw IP and BSD loopback,
and returns the IP header position, an ethertype-like code (0x0800 IPv4, 0x86DD IPv6) and the
innermost VLAN id of every packet.
"""

from __future__ import annotations

import numpy as np

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
_VLAN_TAGS = (0x8100, 0x88A8, 0x9100)
_RAW_IP = (12, 14, 101, 228, 229)
_V6_FAMILIES = (10, 24, 28, 30)


class ByteView:
    """Vectorised reads from one packet buffer; positions are absolute int64 arrays."""

    def __init__(self, data: bytes, end: np.ndarray) -> None:
        self.buf = np.frombuffer(data, dtype=np.uint8) if len(data) else np.zeros(1, dtype=np.uint8)
        self.last = len(self.buf) - 1
        self.end = end

    def u8(self, pos: np.ndarray) -> np.ndarray:
        return self.buf[np.minimum(pos, self.last)].astype(np.int64)  # positions are never negative

    def u16(self, pos: np.ndarray) -> np.ndarray:
        return (self.u8(pos) << 8) | self.u8(pos + 1)

    def u32(self, pos: np.ndarray) -> np.ndarray:
        return (self.u16(pos) << 16) | self.u16(pos + 2)

    def block(self, pos: np.ndarray, width: int) -> np.ndarray:
        """An (n, width) uint8 array of the bytes at ``pos``."""
        return self.buf[np.minimum(pos[:, None] + np.arange(width), self.last)]

    def has(self, pos: np.ndarray, width: int | np.ndarray) -> np.ndarray:
        """True where ``width`` bytes from ``pos`` were captured."""
        return pos + width <= self.end


def isin(values: np.ndarray, choices: tuple[int, ...] | np.ndarray) -> np.ndarray:
    """np.isin for a few small constants, without its per-call set-up cost."""
    out = values == choices[0]
    for c in choices[1:]:
        out |= values == c
    return out


def ethertype_from_nibble(view: ByteView, pos: np.ndarray) -> np.ndarray:
    nibble = view.u8(pos) >> 4
    return np.where(nibble == 4, ETH_IPV4, np.where(nibble == 6, ETH_IPV6, 0))


def ethernet_tags(view: ByteView, pos: np.ndarray, et: np.ndarray, vlan: np.ndarray,
                  rows: np.ndarray, truncated: np.ndarray) -> None:
    """Skip VLAN tags, a PPPoE session header and MPLS labels in place for ``rows``."""
    for _ in range(4):
        m = rows & isin(et, _VLAN_TAGS) & ~truncated
        if not m.any():
            break
        truncated |= m & ~view.has(pos, 4)
        m &= ~truncated
        vlan[m] = view.u16(pos[m]) & 0x0FFF
        et[m] = view.u16(pos[m] + 2)
        pos[m] += 4
    m = rows & (et == 0x8864) & ~truncated
    truncated |= m & ~view.has(pos, 8)
    m &= ~truncated
    ppp = view.u16(pos[m] + 6)
    et[m] = np.where(ppp == 0x21, ETH_IPV4, np.where(ppp == 0x57, ETH_IPV6, 0))
    pos[m] += 8
    m = rows & isin(et, (0x8847, 0x8848)) & ~truncated
    for _ in range(6):
        if not m.any():
            break
        truncated |= m & ~view.has(pos, 4)
        m &= ~truncated
        bottom = m & ((view.u8(pos + 2) & 1) == 1)
        pos[m] += 4
        et[bottom] = ethertype_from_nibble(view, pos[bottom])
        m &= ~bottom
    et[m] = 0


def link_layer(view: ByteView, offset: np.ndarray, linktype: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ip position, ethertype code, vlan id, truncated mask, unsupported-link mask)."""
    n = len(offset)
    pos = offset.astype(np.int64).copy()
    et = np.zeros(n, dtype=np.int64)
    vlan = np.zeros(n, dtype=np.int64)
    truncated = np.zeros(n, dtype=bool)
    eth, sll, sll2 = linktype == 1, linktype == 113, linktype == 276
    raw = isin(linktype, _RAW_IP)
    loop = (linktype == 0) | (linktype == 108)
    unsupported = ~(eth | sll | sll2 | raw | loop)
    for rows, header, et_at in ((eth, 14, 12), (sll, 16, 14), (sll2, 20, 0)):
        truncated |= rows & ~view.has(pos, header)
        ok = rows & ~truncated
        et[ok] = view.u16(pos[ok] + et_at)
        pos[ok] += header
    truncated |= loop & ~view.has(pos, 4)
    ok = loop & ~truncated
    family = np.maximum(view.u8(pos[ok]), view.u8(pos[ok] + 3))
    et[ok] = np.where(family == 2, ETH_IPV4, np.where(isin(family, _V6_FAMILIES), ETH_IPV6, 0))
    pos[ok] += 4
    truncated |= raw & ~view.has(pos, 1)
    ok = raw & ~truncated
    et[ok] = ethertype_from_nibble(view, pos[ok])
    ethernet_tags(view, pos, et, vlan, (eth | sll) & ~truncated, truncated)
    return pos, et, vlan, truncated, unsupported
