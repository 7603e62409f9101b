"""Canonical bidirectional flow keys and their 64-bit hashes, one compiled loop over the packets.

:func:`key_hashes` orders each packet's two endpoints (address, port) so both directions of a
conversation share one key, and hashes (protocol, VLAN, tunnel kind, lo endpoint, hi endpoint)
to 64 bits. The key is the 40 bytes lo address, lo port, hi address, hi port (big-endian) and
protocol, VLAN (big-endian), tunnel kind, hashed as five native 64-bit words (xor, multiply by
an odd constant, xor-shift per word); the lo endpoint is the one whose address (then port)
sorts first byte by byte. ICMP keys carry no ports.

>>> from finsa.collectors.meter.decode import decode_packets
>>> from finsa.collectors.pcap.capture import PacketBatch
>>> ip = bytes.fromhex("450000280000400040060000c0a80001c0a80002")
>>> tcp = bytes.fromhex("04d2005000000000000000005002000000000000")
>>> back = ip[:12] + ip[16:20] + ip[12:16]
>>> frames = [bytes(12) + b"\\x08\\x00" + ip + tcp, bytes(12) + b"\\x08\\x00" + back + tcp[2:4] + tcp[0:2] + tcp[4:]]
>>> h, lo = key_hashes(decode_packets(PacketBatch.from_packets(list(enumerate(frames)))), vlan_in_key=False)
>>> bool(h[0] == h[1]), lo.tolist()
(True, [True, False])
"""

from __future__ import annotations

import numpy as np

from finsa.collectors.compiled import carray, helper, kernel

__all__ = ["key_hashes"]


@helper
def _bswap(x):
    """The 64-bit word with its bytes reversed (big-endian order of a little-endian load)."""
    out = np.uint64(0)
    for _ in range(8):
        out = (out << np.uint64(8)) | (x & np.uint64(0xFF))
        x >>= np.uint64(8)
    return out


@helper
def _swap16(port):
    return ((port & np.uint64(0xFF)) << np.uint64(8)) | (port >> np.uint64(8))


@helper
def _mix(h, word, factor):
    h = (h ^ word) * factor
    return h ^ (h >> np.uint64(29))


@kernel("void(u64*, u64*, u16*, u16*, u8*, u16*, u8*, i64, i64, u64*, u8*)")
def _hash_loop(src_p, dst_p, sport_p, dport_p, proto_p, vlan_p, tunnel_p, n, vlan_in_key, hash_p, lo_p):
    src, dst, sports, dports = carray(src_p, 2 * n), carray(dst_p, 2 * n), carray(sport_p, n), carray(dport_p, n)
    protos, vlans, tunnels = carray(proto_p, n), carray(vlan_p, n), carray(tunnel_p, n)
    hashes, dir_lo = carray(hash_p, n), carray(lo_p, n)
    for i in range(n):
        proto = np.uint64(protos[i])
        icmp = proto == 1 or proto == 58
        sport = np.uint64(0) if icmp else np.uint64(sports[i])
        dport = np.uint64(0) if icmp else np.uint64(dports[i])
        s0, s1, d0, d1 = src[2 * i], src[2 * i + 1], dst[2 * i], dst[2 * i + 1]
        sb0, db0, sb1, db1 = _bswap(s0), _bswap(d0), _bswap(s1), _bswap(d1)
        lo = sb0 < db0 or (sb0 == db0 and (sb1 < db1 or (sb1 == db1 and sport <= dport)))
        l0, l1, h0, h1 = (s0, s1, d0, d1) if lo else (d0, d1, s0, s1)
        lp, hp = (_swap16(sport), _swap16(dport)) if lo else (_swap16(dport), _swap16(sport))
        vlan = np.uint64(vlans[i]) if vlan_in_key else np.uint64(0)
        extra = proto | (_swap16(vlan) << np.uint64(8)) | (np.uint64(tunnels[i]) << np.uint64(24))
        h = _mix(np.uint64(0), l0, np.uint64(0x9E3779B97F4A7C15))
        h = _mix(h, l1, np.uint64(0xC2B2AE3D27D4EB4F))
        h = _mix(h, lp | (h0 << np.uint64(16)), np.uint64(0x165667B19E3779F9))
        h = _mix(h, (h0 >> np.uint64(48)) | (h1 << np.uint64(16)), np.uint64(0xD6E8FEB86659FD93))
        h = _mix(h, (h1 >> np.uint64(48)) | (hp << np.uint64(16)) | (extra << np.uint64(32)), np.uint64(0xFF51AFD7ED558CCD))
        hashes[i] = h
        dir_lo[i] = 1 if lo else 0


def _words(ips: np.ndarray) -> np.ndarray:
    """The (n, 16) addresses as 2n native 64-bit words."""
    return np.ascontiguousarray(ips, dtype=np.uint8).view(np.uint64).reshape(-1)


def key_hashes(decoded, vlan_in_key: bool) -> tuple[np.ndarray, np.ndarray]:
    """(64-bit key hash, True where the packet's source is the key's lo endpoint), per packet."""
    n = len(decoded.protocol)
    hashes, dir_lo = np.empty(n, dtype=np.uint64), np.empty(n, dtype=np.bool_)
    _hash_loop(_words(decoded.src_ip), _words(decoded.dst_ip),
               *(np.ascontiguousarray(getattr(decoded, name), dtype=dtype) for name, dtype in
                 (("src_port", np.uint16), ("dst_port", np.uint16), ("protocol", np.uint8),
                  ("vlan_id", np.uint16), ("tunnel_kind", np.uint8))),
               n, vlan_in_key, hashes, dir_lo.view(np.uint8))
    return hashes, dir_lo
