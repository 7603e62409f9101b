"""Parse one retired TPACKET_V3 ring block into a :class:`~finsa.collectors.pcap.capture.PacketBatch`.

A V3 block starts with ``struct tpacket_block_desc`` (version, offset_to_priv, then
``tpacket_hdr_v1``: block_status, num_pkts, offset_to_first_pkt, blk_len, seq_num, first and
last timestamps). Its packets follow, each a ``struct tpacket3_hdr`` (tp_next_offset, tp_sec,
tp_nsec, tp_snaplen, tp_len, tp_status, tp_mac, tp_net, rxhash, vlan_tci, vlan_tpid) and the
frame at ``tp_mac``. :func:`parse_block` takes a copy of the block's used bytes: it walks the
``tp_next_offset`` chain (one integer add per packet), gathers the header fields with numpy, and
returns a batch whose ``data`` is the block copy itself, so frames are not copied again.

The kernel strips a received VLAN tag into ``tp_vlan_tci``; on Ethernet the tag is put back
(as libpcap does) so the frame decodes as it was on the wire, both lengths growing by 4 bytes.

>>> import struct
>>> frame = bytes(range(60))
>>> pkt = struct.pack("<6I2H3I", 0, 7, 5, 60, 60, 1, 48, 62, 0, 0, 0) + bytes(8) + frame
>>> blk = struct.pack("<5I", 1, 0, 1, 1, 48) + struct.pack("<I", 48 + len(pkt)) + bytes(24) + pkt
>>> b = parse_block(blk, linktype=1)
>>> len(b), int(b.ts_ns[0]), b.packet(0) == frame
(1, 7000000005, True)
"""

from __future__ import annotations

import struct

import numpy as np

from finsa.collectors.pcap.capture import PacketBatch
from finsa.metrics import REGISTRY

__all__ = ["parse_block", "block_header", "empty_batch", "concat_batches", "TP_STATUS_KERNEL", "TP_STATUS_USER",
           "BLOCK_STATUS_OFFSET"]

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
BLOCK_STATUS_OFFSET = 8
_BLOCK_HDR = struct.Struct("<IIIIII")  # version, offset_to_priv, status, num_pkts, first, blk_len
_ETH_P_8021Q = 0x8100
_TPACKET3_HDR_BYTES = 48
WALKS = REGISTRY.counter("finsa_capture_block_walks_total",
                         "Ring blocks whose packet chain was found vectorised, or walked in a loop", ["method"])
_VLAN_TAG_BYTES = 4


def block_header(block: bytes | memoryview) -> tuple[int, int, int, int]:
    """(block_status, num_pkts, offset_to_first_pkt, blk_len) of a block descriptor."""
    _, _, status, num_pkts, first, blk_len = _BLOCK_HDR.unpack_from(block, 0)
    return status, num_pkts, first, blk_len


def empty_batch() -> PacketBatch:
    """A batch of no packets (what an idle poll yields)."""
    zeros = np.zeros(0, dtype=np.int64)
    return PacketBatch(b"", zeros, zeros, zeros, np.zeros(0, dtype=np.uint16), zeros)


def concat_batches(parts: list[PacketBatch]) -> PacketBatch:
    """One batch of several, in order: buffers joined, offsets shifted."""
    shift = np.cumsum([0] + [len(p.data) for p in parts[:-1]])
    return PacketBatch(b"".join(p.data for p in parts), np.concatenate([p.ts_ns for p in parts]),
                       np.concatenate([p.caplen for p in parts]), np.concatenate([p.wirelen for p in parts]),
                       np.concatenate([p.linktype for p in parts]),
                       np.concatenate([p.offset + s for p, s in zip(parts, shift)]))


def _packet_offsets(block: bytes, first: int, count: int) -> np.ndarray:
    """Positions of the packet headers: the tp_next_offset chain from ``first``, ``count`` long."""
    fast = np.array([first], dtype=np.int64) if count == 1 else _chain_vectorised(block, first, count)
    if fast is not None:
        return fast
    WALKS.inc(method="loop")
    words = memoryview(block)[: len(block) & ~3].cast("I")
    out = [0] * count
    pos = first
    for i in range(count):
        out[i] = pos
        pos += words[pos >> 2]
    return np.array(out, dtype=np.int64)


def _chain_vectorised(block: bytes, first: int, count: int) -> np.ndarray | None:
    """The chain found without walking it, or None when the shortcut does not apply.

    Packets sit at 8-byte aligned positions, each ``tp_next_offset`` = align8(tp_mac +
    tp_snaplen). Every aligned slot that looks like such a header is a candidate; candidates
    that no other candidate points to are dropped; what is left must then *be* the chain (first
    at ``first``, each the previous plus its step, ``count`` of them), which is checked exactly,
    so payload bytes that happen to look like a header can only cost the fallback, never a
    wrong result.
    """
    if first % 8:
        return None
    words = np.frombuffer(block, dtype="<u4", count=len(block) >> 2)[first >> 2:]
    m = (len(words) - 7) // 2 + 1
    if m < count:
        return None
    step, snap, wire, mac = (words[k::2][:m] for k in (0, 3, 4, 6))
    mac = mac & 0xFFFF
    cand = np.flatnonzero((mac >= _TPACKET3_HDR_BYTES) & (snap <= wire)
                          & ((step == ((mac + snap + 7) & ~np.uint32(7))) | (step == 0)))
    hop = step[cand]
    links = (hop > 0) & (hop & 7 == 0)  # a last packet (step 0) points nowhere, not to itself
    pointed = np.zeros(m + 1, dtype=bool)
    pointed[np.minimum(cand[links] + (hop[links] >> 3), m)] = True
    pointed[0] = True  # the first packet
    slots = cand[pointed[cand]][:count]
    if len(slots) < count or slots[0] != 0:
        return None
    if not np.array_equal(slots[1:], slots[:-1] + (step[slots[:-1]] >> 3)):
        return None
    pos = first + 8 * slots.astype(np.int64)
    WALKS.inc(method="vectorised")
    return pos


def parse_block(block: bytes, linktype: int, partial: bool = False) -> PacketBatch:
    """The packets of a copied block (at least its ``blk_len`` bytes) as one batch.

    ``partial``: the block was still being filled; packets from the first one the kernel had
    not finished writing (no TP_STATUS_USER in its header) on are left out.
    """
    _, count, first, _ = block_header(block)
    if count == 0:
        return empty_batch()
    pos = _packet_offsets(block, first, count)
    words = np.frombuffer(block, dtype="<u4", count=len(block) >> 2)
    halves = np.frombuffer(block, dtype="<u2", count=len(block) >> 1)
    if partial:
        unfinished = np.flatnonzero((words[(pos >> 2) + 5] & TP_STATUS_USER) == 0)
        pos = pos[: unfinished[0]] if len(unfinished) else pos
        if not len(pos):
            return empty_batch()
        count = len(pos)
    at = pos >> 2
    ts_ns = words[at + 1].astype(np.int64) * 1_000_000_000 + words[at + 2]
    caplen = words[at + 3].astype(np.int64)
    wirelen = words[at + 4].astype(np.int64)
    status = words[at + 5]
    offset = pos + halves[(pos >> 1) + 12]
    links = np.full(count, linktype, dtype=np.uint16)
    tagged = (status & TP_STATUS_VLAN_VALID) != 0
    if linktype == 1 and tagged.any():
        tci = words[at + 8] & 0xFFFF
        tpid = np.where(status & TP_STATUS_VLAN_TPID_VALID, halves[(pos >> 1) + 18], _ETH_P_8021Q)
        data, offset = _insert_vlan_tags(block, offset, caplen, tagged, tpid, tci)
        grow = tagged * _VLAN_TAG_BYTES
        return PacketBatch(data, ts_ns, caplen + grow, wirelen + grow, links, offset)
    return PacketBatch(block, ts_ns, caplen, wirelen, links, offset)


def _insert_vlan_tags(block: bytes, offset: np.ndarray, caplen: np.ndarray, tagged: np.ndarray,
                      tpid: np.ndarray, tci: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Frames rebuilt with their 802.1Q tag after the two MAC addresses; new buffer and offsets."""
    tagged = tagged & (caplen >= 12)
    out_len = caplen + tagged * _VLAN_TAG_BYTES
    out_off = np.zeros(len(out_len), dtype=np.int64)
    np.cumsum(out_len[:-1], out=out_off[1:])
    frame = np.repeat(np.arange(len(out_len)), out_len)
    within = np.arange(int(out_len.sum()), dtype=np.int64) - out_off[frame]
    shifted = tagged[frame] & (within >= 12)
    src = offset[frame] + within - shifted * _VLAN_TAG_BYTES
    tags = np.zeros((len(out_len), 4), dtype=np.uint8)
    tags[:, 0], tags[:, 1] = tpid >> 8, tpid & 0xFF
    tags[:, 2], tags[:, 3] = tci >> 8, tci & 0xFF
    is_tag = shifted & (within < 12 + _VLAN_TAG_BYTES)
    src[is_tag] = len(block) + frame[is_tag] * 4 + within[is_tag] - 12
    source = np.concatenate([np.frombuffer(block, dtype=np.uint8), tags.ravel()])
    return source[src].tobytes(), out_off
