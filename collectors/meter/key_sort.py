"""The one sort of a chunk: packets in stable key-hash order, and their groups of equal hashes.

:func:`sort_keys` puts the packet number in the hash's low bits and sorts those 64-bit values
with a compiled LSD radix sort (8-bit digits; a digit every value shares is skipped), then
derives the order, each position's group, the groups' starts and their hashes in the same pass.
The values are distinct, so any correct sort gives the one stable order; the digits that only
hold the packet number are not passed over (the values come in packet order, and each LSD pass
keeps the order of equal digits). When two different
hashes share the remaining high bits (rare), the exact stable argsort is used instead.

>>> keys = sort_keys(np.array([9, 3, 9, 5], dtype=np.uint64))
>>> keys.order.tolist(), keys.group.tolist(), keys.starts.tolist(), keys.uniq.tolist()
([1, 3, 0, 2], [0, 1, 2, 2], [0, 1, 2], [3, 5, 9])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from finsa.collectors.compiled import carray, kernel

__all__ = ["KeyOrder", "sort_keys"]


@dataclass
class KeyOrder:
    """Packets ordered by key hash, stably: the one sort of a chunk, shared by the table lookup,
    the hint prefilter and the sorted rows."""

    order: np.ndarray  # packet numbers in (hash, arrival) order
    group: np.ndarray  # per sorted position: which distinct hash
    starts: np.ndarray  # sorted position where each distinct hash starts
    uniq: np.ndarray  # the distinct hashes, ascending

    def per_packet(self, per_group: np.ndarray) -> np.ndarray:
        """A value per distinct hash spread to every packet (in packet order)."""
        out = np.empty(len(self.order), dtype=per_group.dtype)
        out[self.order] = per_group[self.group]
        return out


@kernel("i64(u64*, i64, i64, u64*, u64*, i64*, i64*, i64*, i64*, u64*)")
def _sort(hash_p, n, bits, a_p, b_p, counts_p, order_p, group_p, starts_p, uniq_p):
    """Radix-sort the packed values and derive the groups; returns the number of groups, or -1
    when two different hashes share their high bits (the caller sorts exactly instead)."""
    hashes, a, b, counts = carray(hash_p, n), carray(a_p, n), carray(b_p, n), carray(counts_p, 8 * 256)
    order, group, starts, uniq = carray(order_p, n), carray(group_p, n), carray(starts_p, n), carray(uniq_p, n)
    if n == 0:
        return 0
    low = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    for k in range(8 * 256):
        counts[k] = 0
    for i in range(n):
        v = (hashes[i] & ~low) | np.uint64(i)
        a[i] = v
        for d in range(8):
            counts[d * 256 + np.int64((v >> np.uint64(8 * d)) & np.uint64(255))] += 1
    src, dst = a, b
    for d in range(8):
        base, shift = d * 256, np.uint64(8 * d)
        if 8 * (d + 1) <= bits:
            continue  # a digit of the packet number: values are in packet order already, which LSD passes keep
        if counts[base + np.int64((src[0] >> shift) & np.uint64(255))] == n:
            continue  # every value has this digit: the pass would move nothing
        total = 0
        for k in range(256):
            c = counts[base + k]
            counts[base + k] = total
            total += c
        for i in range(n):
            v = src[i]
            k = base + np.int64((v >> shift) & np.uint64(255))
            dst[counts[k]] = v
            counts[k] += 1
        src, dst = dst, src
    g = -1
    for j in range(n):
        v = src[j]
        p = np.int64(v & low)
        order[j] = p
        h = hashes[p]
        if j == 0 or h != uniq[g]:
            if j > 0 and (v >> np.uint64(bits)) == (src[j - 1] >> np.uint64(bits)):
                return -1
            g += 1
            starts[g] = j
            uniq[g] = h
        group[j] = g
    return g + 1


def sort_keys(hashes: np.ndarray) -> KeyOrder:
    """The stable order of ``hashes`` (uint64) and its groups of equal hashes."""
    n = len(hashes)
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    order, group, starts = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    uniq = np.empty(n, dtype=np.uint64)
    groups = _sort(hashes, n, max(1, (n - 1).bit_length()), np.empty(n, dtype=np.uint64), np.empty(n, dtype=np.uint64),
                   np.empty(8 * 256, dtype=np.int64), order, group, starts, uniq)
    if groups >= 0:
        return KeyOrder(order, group, starts[:groups], uniq[:groups])
    order = np.argsort(hashes, kind="stable")
    ordered = hashes[order]
    new = np.ones(n, dtype=bool)
    new[1:] = ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(new)
    return KeyOrder(order, np.cumsum(new) - 1, starts, ordered[starts])
