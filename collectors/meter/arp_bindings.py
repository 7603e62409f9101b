"""ARP address bindings from packet batches, vectorised: who claims which IPv4 address.

Every ARP packet on Ethernet (untagged, 802.1Q or QinQ) for IPv4 over Ethernet hardware states a
binding: its sender protocol address is at its sender hardware address. :func:`arp_bindings`
groups a batch's ARP packets by (VLAN, address, MAC) into one :data:`finsa.wire.ARP` row with the
first and last time seen and how many requests, replies and gratuitous announcements carried it,
and how many came from another Ethernet source than the MAC they claim. ARP probes (sender
address 0.0.0.0) claim nothing and are left out; malformed ARP packets are counted by reason.

A spoofer answering for the gateway shows up as a second MAC for the gateway's address; the
stream layer's ARP detector (:mod:`finsa.detectors.arpspoof`) judges that.

>>> from finsa.collectors.pcap.capture import PacketBatch
>>> def arp(op, sha, spa, tpa, src=None):
...     eth = bytes(6) + (src or sha) + b"\\x08\\x06"
...     return eth + bytes.fromhex("000108000604") + op.to_bytes(2, "big") + sha + bytes(spa) + bytes(6) + bytes(tpa)
>>> mac = bytes.fromhex("0025b3bf91ee")
>>> batch = PacketBatch.from_packets([(1_000_000_000, arp(2, mac, [172, 16, 0, 1], [172, 16, 0, 105])),
...                                   (2_000_000_000, arp(2, mac, [172, 16, 0, 1], [172, 16, 0, 105]))])
>>> rows = arp_bindings(batch, "bank-a", "tap1").rows()
>>> [(r["replies"], r["requests"], hex(r["mac"]), r["first_seen_ms"], r["last_seen_ms"]) for r in rows]
[(2, 0, '0x25b3bf91ee', 1000, 2000)]
"""

from __future__ import annotations

import numpy as np

from finsa.collectors.pcap.capture import PacketBatch
from finsa.metrics import REGISTRY
from finsa.wire import ARP, RecordBatch, ipv4_to_mapped

__all__ = ["arp_bindings", "ARP_PACKETS", "ARP_SKIPPED"]

ARP_PACKETS = REGISTRY.counter("finsa_collector_arp_packets_total", "ARP packets read into bindings")
ARP_SKIPPED = REGISTRY.counter("finsa_collector_arp_skipped_total", "ARP packets not turned into a binding",
                               ["reason"])

_ETHERNET = 1
_VLAN_TAGS = (0x8100, 0x88A8, 0x9100)
_ARP_BYTES = 28  # htype, ptype, hlen, plen, oper, sha, spa, tha, tpa for IPv4 over Ethernet


def _u16(buf: np.ndarray, at: np.ndarray) -> np.ndarray:
    return (buf[at].astype(np.uint32) << 8) | buf[at + 1]


def _gather(buf: np.ndarray, start: np.ndarray, width: int) -> np.ndarray:
    """Big-endian unsigned integers of ``width`` bytes at every ``start``."""
    out = np.zeros(len(start), dtype=np.uint64)
    for k in range(width):
        out = (out << np.uint64(8)) | buf[start + k].astype(np.uint64)
    return out


def _arp_offsets(packets: PacketBatch, buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(packet index, ARP header offset, VLAN id) of the Ethernet ARP packets in the batch."""
    eth = np.flatnonzero((packets.linktype == _ETHERNET) & (packets.caplen >= 14))
    base = packets.offset[eth].astype(np.int64)
    caplen = packets.caplen[eth].astype(np.int64)
    at = np.full(len(eth), 12, dtype=np.int64)
    vlan = np.zeros(len(eth), dtype=np.int64)
    for _ in range(2):  # up to two tags (QinQ): the innermost VLAN id is kept
        room = at + 4 <= caplen
        tagged = room & np.isin(_u16(buf, base + np.minimum(at, caplen - 2)), _VLAN_TAGS)
        vlan = np.where(tagged, _u16(buf, base + np.where(tagged, at + 2, 0)) & 0x0FFF, vlan)
        at = np.where(tagged, at + 4, at)
    is_arp = _u16(buf, base + at) == 0x0806
    return eth[is_arp], base[is_arp] + at[is_arp] + 2, vlan[is_arp]


def arp_bindings(packets: PacketBatch, institution_id: str = "", sensor_id: str = "") -> RecordBatch:
    """The :data:`~finsa.wire.ARP` bindings claimed in ``packets`` (see the module docstring)."""
    empty = ARP.make_batch({}, n_rows=0)
    if not len(packets):
        return empty
    buf = np.frombuffer(packets.data, dtype=np.uint8)
    index, start, vlan = _arp_offsets(packets, buf)
    if not len(index):
        return empty
    ARP_PACKETS.inc(len(index))
    end = packets.offset[index].astype(np.int64) + packets.caplen[index].astype(np.int64)
    whole = start + _ARP_BYTES <= end
    if not whole.all():
        ARP_SKIPPED.inc(int((~whole).sum()), reason="truncated")
    index, start, vlan = index[whole], start[whole], vlan[whole]
    ipv4_ether = (_gather(buf, start, 6) == 0x0001_0800_0604)  # htype 1, ptype IPv4, hlen 6, plen 4
    op = _u16(buf, start + 6)
    known = ipv4_ether & ((op == 1) | (op == 2))
    if not known.all():
        ARP_SKIPPED.inc(int((~known).sum()), reason="not_ipv4_over_ethernet")
    sha, spa, tpa = _gather(buf, start + 8, 6), _gather(buf, start + 14, 4), _gather(buf, start + 24, 4)
    claims = known & (spa != 0)
    if int((known & (spa == 0)).sum()):
        ARP_SKIPPED.inc(int((known & (spa == 0)).sum()), reason="probe")
    eth_src = _gather(buf, packets.offset[index].astype(np.int64) + 6, 6)
    sel = np.flatnonzero(claims)
    if not len(sel):
        return empty
    return _aggregate(packets.ts_ns[index[sel]] // 1_000_000, vlan[sel], spa[sel], sha[sel], op[sel],
                      spa[sel] == tpa[sel], eth_src[sel] != sha[sel], institution_id, sensor_id)


def _aggregate(t_ms: np.ndarray, vlan: np.ndarray, ip: np.ndarray, mac: np.ndarray, op: np.ndarray,
               gratuitous: np.ndarray, mismatch: np.ndarray, institution_id: str, sensor_id: str) -> RecordBatch:
    keys = np.stack([vlan.astype(np.uint64), ip.astype(np.uint64), mac.astype(np.uint64)], axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    n = len(uniq)

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(inverse, weights=values.astype(np.float64), minlength=n).astype(np.int64)

    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(first, inverse, t_ms.astype(np.int64))
    np.maximum.at(last, inverse, t_ms.astype(np.int64))
    order = np.lexsort((uniq[:, 2], uniq[:, 1], uniq[:, 0], first))
    return ARP.make_batch({
        "first_seen_ms": first[order], "last_seen_ms": last[order], "institution_id": [institution_id] * n,
        "sensor_id": [sensor_id] * n, "vlan_id": uniq[order, 0], "ip": ipv4_to_mapped(uniq[order, 1].astype(np.uint32)),
        "mac": uniq[order, 2], "requests": total(op == 1)[order], "replies": total(op == 2)[order],
        "gratuitous": total(gratuitous)[order], "eth_mismatch": total(mismatch)[order]})
