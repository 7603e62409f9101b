"""Payloads that repeat byte for byte, found with numpy so a parser runs once per distinct one.

DNS questions repeat a lot (the same names asked again and again, only the message ID differs).
:func:`distinct_payloads` gathers each short payload into a fixed-width row, hashes the rows,
and confirms every match byte for byte (a hash collision only costs a parse), so a pure
parser called on the representative gives what it would give on every row of its group.

>>> data = b"\\x00\\x01abc" + b"\\x00\\x02abc" + b"\\x00\\x03abd"
>>> first, inverse = distinct_payloads(data, np.array([0, 5, 10]), np.array([5, 10, 15]), skip=2)
>>> first.tolist(), inverse.tolist()
([0, 2], [0, 0, 1])
"""

from __future__ import annotations

import numpy as np

__all__ = ["distinct_payloads"]

#: payloads longer than this are not compared: each is its own group
WIDTH_BYTES = 128
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SHIFT = np.uint64(29)


def _rows(buf: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The WIDTH_BYTES bytes from each start as an (n, WIDTH_BYTES) matrix: one row copy each, the
    few windows that run past the buffer's end byte by byte (their tail is zeroed by the caller)."""
    out = np.empty((len(starts), WIDTH_BYTES), dtype=np.uint8)
    fits = starts + WIDTH_BYTES <= len(buf)
    if len(buf) >= WIDTH_BYTES:
        windows = np.ndarray((len(buf) - WIDTH_BYTES + 1,), dtype=f"V{WIDTH_BYTES}", buffer=buf, strides=(1,))
        out.view(f"V{WIDTH_BYTES}")[fits, 0] = windows[starts[fits]]
    tail = np.flatnonzero(~fits)
    if len(tail):
        out[tail] = buf[np.minimum(starts[tail, None] + np.arange(WIDTH_BYTES), len(buf) - 1)]
    return out


def distinct_payloads(data, starts: np.ndarray, ends: np.ndarray, skip: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(row of each group's first member, group number of every row) for the payloads
    ``data[starts[i]:ends[i]]``, equal when their bytes from ``skip`` on are equal.

    Groups are numbered in the order of their first members; a payload longer than
    :data:`WIDTH_BYTES` or shorter than ``skip`` is a group of its own.
    """
    n = len(starts)
    lens = (ends - starts).astype(np.int64)
    rep = np.arange(n)
    small = np.flatnonzero((lens <= WIDTH_BYTES) & (lens >= skip))
    if len(small) > 1 and len(data):
        mat = _rows(np.frombuffer(data, dtype=np.uint8), starts[small])
        cols = np.arange(WIDTH_BYTES)
        mat[(cols < skip) | (cols >= lens[small, None])] = 0
        words = mat.view("<u8")
        h = lens[small].astype(np.uint64)
        with np.errstate(over="ignore"):
            for j in range(words.shape[1]):
                h = (h ^ words[:, j]) * _MIX
                h ^= h >> _SHIFT
        _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
        same_as = first[inverse.reshape(-1)]
        equal = (mat == mat[same_as]).all(axis=1) & (lens[small] == lens[small][same_as])
        rep[small] = small[np.where(equal, same_as, np.arange(len(small)))]
    firsts, groups = np.unique(rep, return_inverse=True)
    return firsts, groups.reshape(-1)
