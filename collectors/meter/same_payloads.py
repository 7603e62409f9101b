"""Payloads that repeat byte for byte, found in one compiled pass so a parser runs once per distinct one.

DNS questions repeat a lot (the same names asked again and again, only the message ID differs),
and so do HTTP requests of one client. :func:`distinct_payloads` hashes each short payload where
it lies in the capture buffer, keeps the first row of each hash in an open-addressing table and
confirms every match byte for byte (a hash collision only costs a parse), so a pure parser called
on the representative gives what it would give on every row of its group.

>>> data = b"\\x00\\x01abc" + b"\\x00\\x02abc" + b"\\x00\\x03abd"
>>> first, inverse = distinct_payloads(data, np.array([0, 5, 10]), np.array([5, 10, 15]), skip=2)
>>> first.tolist(), inverse.tolist()
([0, 2], [0, 0, 1])
"""

from __future__ import annotations

import numpy as np

from finsa.collectors.compiled import carray, kernel, prefetch, readonly_bytes

__all__ = ["distinct_payloads"]

#: payloads longer than this are not compared: each is its own group
WIDTH_BYTES = 128


@kernel("i64(u8*, i64, i64*, i64*, i64, i64, i64, i64*, i64*, u64*, i64*)")
def _group(buf_p, buf_n, starts_p, ends_p, n, skip, width, table_p, rep_p, hash_p, firsts_p):
    """Per row its group (written over ``rep`` once every row's representative is known) and the
    representatives in row order (``firsts``); returns how many groups. ``table`` (a power of two
    of at least 2n entries, all -1) maps a hash to the first row that had it."""
    buf, starts, ends = carray(buf_p, buf_n), carray(starts_p, n), carray(ends_p, n)
    rep, hashes, firsts = carray(rep_p, n), carray(hash_p, n), carray(firsts_p, n)
    size = 1
    while size < 2 * n:
        size *= 2
    table = carray(table_p, size)
    mask = size - 1
    for i in range(n):
        if i + 8 < n:
            prefetch(buf, min(max(starts[i + 8], 0), buf_n - 1))  # rows lie far apart in the buffer
        rep[i] = i
        length = ends[i] - starts[i]
        if length > width or length < skip or starts[i] < 0 or ends[i] > buf_n:
            continue
        h = np.uint64(length) * np.uint64(0x9E3779B97F4A7C15)
        for k in range(starts[i] + skip, ends[i], 8):  # eight bytes per multiply
            word = np.uint64(0)
            for b in range(min(8, ends[i] - k)):
                word |= np.uint64(buf[k + b]) << np.uint64(8 * b)
            h = (h ^ word) * np.uint64(0x100000001B3)
            h ^= h >> np.uint64(29)
        hashes[i] = h
        slot = np.int64(h & np.uint64(mask))
        while True:
            j = table[slot]
            if j < 0:
                table[slot] = i
                break
            if hashes[j] == h:
                same = ends[j] - starts[j] == length
                if same:
                    a, b = starts[i], starts[j]
                    for k in range(skip, length):
                        if buf[a + k] != buf[b + k]:
                            same = False
                            break
                if same:
                    rep[i] = j
                break  # a collision with other bytes: a group of its own
            slot = (slot + 1) & mask
    count = 0
    for i in range(n):
        if rep[i] == i:
            hashes[i] = np.uint64(count)  # the group number of a representative (its hash is no longer needed)
            firsts[count] = i
            rep[i] = count
            count += 1
        else:
            rep[i] = np.int64(hashes[rep[i]])
    return count


def distinct_payloads(data, starts: np.ndarray, ends: np.ndarray, skip: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(row of each group's first member, group number of every row) for the payloads
    ``data[starts[i]:ends[i]]``, equal when their bytes from ``skip`` on are equal.

    Groups are numbered in the order of their first members; a payload longer than
    :data:`WIDTH_BYTES`, shorter than ``skip`` or not inside ``data`` is a group of its own.
    """
    n = len(starts)
    if n == 0 or not len(data):
        return np.arange(n), np.arange(n)
    buf = readonly_bytes(data)
    size = 1 << max(int(2 * n - 1).bit_length(), 0)
    table = np.full(size, -1, dtype=np.int64)
    groups, firsts = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    count = _group(buf, len(buf), np.ascontiguousarray(starts, dtype=np.int64), np.ascontiguousarray(ends, dtype=np.int64),
                   n, skip, WIDTH_BYTES, table, groups, np.zeros(n, dtype=np.uint64), firsts)
    return firsts[:count], groups
