"""Framing of classic pcap records: where every record of a buffer starts, and its header fields.

Records are variable length, so finding them is a walk (each header's captured length gives the
next header). :func:`frame_records` walks a buffer once in a compiled loop
(:func:`finsa.collectors.compiled.kernel`) and writes each whole record's position, time and
lengths as it goes: each record header is read once. The walk stops at the first record that
does not fit whole before ``end`` (more data needed) or at an absurd captured length (framing
broke). After a corrupt record length, :func:`resync` finds the next plausible record (two
chained sane headers), so a reader loses the corrupt record, not the rest of the file.

>>> import struct
>>> rec = struct.pack("<IIII", 1_700_000_000, 5, 4, 60) + b"abcd"
>>> got = frame_records(rec * 3 + rec[:10], 0, 3 * 20 + 10, "<", 1000)
>>> got.heads.tolist(), got.end, got.framed, got.ts_ns.tolist()[0], got.caplen.tolist(), got.wirelen.tolist()
([0, 20, 40], 60, True, 1700000000000005000, [4, 4, 4], [60, 60, 60])
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from finsa.collectors.compiled import carray, helper, kernel, prefetch, readonly_bytes

__all__ = ["frame_records", "Records", "resync", "u32_at", "MAX_RECORD_BYTES"]

MAX_RECORD_BYTES = 256 << 20
_PLAUSIBLE_CAPLEN = 262_144
_DAY_S = 86_400
_AHEAD_BYTES = 4096  # the walk asks for the bytes this far ahead of each record (they are read in order)


class Records(NamedTuple):
    """The whole records of a buffer: header positions (int64, into the buffer), capture times in
    ns, captured and wire lengths; where the walk stopped and whether framing held."""

    heads: np.ndarray
    ts_ns: np.ndarray
    caplen: np.ndarray
    wirelen: np.ndarray
    end: int
    framed: bool


def u32_at(arr: np.ndarray, order: str) -> np.ndarray:
    """An unaligned uint32 view with one element starting at every byte of ``arr``."""
    n = max(len(arr) - 3, 0)
    return np.ndarray((n,), dtype=order + "u4", buffer=arr, offset=0, strides=(1,)) if n else \
        np.zeros(0, dtype=order + "u4")


@helper
def _u32(buf, at, big):
    if big:
        return (np.int64(buf[at]) << 24) | (np.int64(buf[at + 1]) << 16) | (np.int64(buf[at + 2]) << 8) \
            | np.int64(buf[at + 3])
    return (np.int64(buf[at + 3]) << 24) | (np.int64(buf[at + 2]) << 16) | (np.int64(buf[at + 1]) << 8) \
        | np.int64(buf[at])


@kernel("i64(u8*, i64, i64, i64, i64, i64, i64*, i64*, i64*, i64*, i64, i64*)")
def _walk(buf_p, pos, end, big, sub_ns, max_record, heads_p, ts_p, cap_p, wire_p, most, stop_p):
    """Fill the columns record by record from ``pos``; returns the records found. ``stop`` gets
    where the walk stopped and 1 if framing held (0 at an absurd captured length)."""
    buf, stop = carray(buf_p, end), carray(stop_p, 2)
    heads, ts_ns, caplen, wirelen = carray(heads_p, most), carray(ts_p, most), carray(cap_p, most), carray(wire_p, most)
    n = 0
    stop[1] = 1
    while pos + 16 <= end and n < most:
        prefetch(buf, pos + _AHEAD_BYTES)
        cap = _u32(buf, pos + 8, big)
        if cap > max_record:
            stop[1] = 0
            break
        nxt = pos + 16 + cap
        if nxt > end:
            break
        heads[n] = pos
        ts_ns[n] = _u32(buf, pos, big) * 1_000_000_000 + _u32(buf, pos + 4, big) * sub_ns
        caplen[n] = cap
        wirelen[n] = _u32(buf, pos + 12, big)
        n += 1
        pos = nxt
    stop[0] = pos
    return n


def frame_records(buf, pos: int, end: int, order: str, sub_ns: int, most: int | None = None) -> Records:
    """The whole records in ``buf[pos:end]``, at most ``most`` of them (``order`` ``"<"`` or ``">"``;
    ``sub_ns`` ns per fraction unit of the timestamps: 1000 for microsecond pcap, 1 for nanosecond)."""
    end = min(end, len(buf))
    most = min(most, max(end - pos, 0) // 16 + 1) if most is not None else max(end - pos, 0) // 16 + 1
    cols = [np.empty(most, dtype=np.int64) for _ in range(4)]
    stop = np.zeros(2, dtype=np.int64)
    n = _walk(readonly_bytes(buf), pos, end, order == ">", sub_ns, MAX_RECORD_BYTES, *cols, most, stop)
    heads, ts_ns, caplen, wirelen = (c[:n] for c in cols)
    return Records(heads, ts_ns, caplen, wirelen, int(stop[0]), bool(stop[1]))


def resync(buf, start: int, end: int, order: str, frac_limit: int, sec_ref: int) -> tuple[int | None, int]:
    """The first position in ``buf[start:end]`` holding a sane record header whose next header
    is sane too (or that ends exactly at ``end``), as ``(position, _)``; else ``(None, keep)``:
    more data is needed from ``keep`` on (a candidate whose follower is not in the buffer yet).

    Sane: fraction below ``frac_limit``, captured <= wire length <= a plausible snap length,
    seconds within 30 days of ``sec_ref`` (a good record's time).

    >>> import struct
    >>> rec = struct.pack("<IIII", 1_700_000_000, 5, 4, 60) + b"abcd"
    >>> resync(b"junk!" + rec * 2, 1, 45, "<", 1_000_000, 1_700_000_000)
    (5, 45)
    """
    n = end - start - 15
    if n <= 0:
        return None, start
    arr = np.frombuffer(buf, dtype=np.uint8, count=end)[start:end]
    u4 = u32_at(arr, order).astype(np.int64)
    sec, frac, cap, wire = u4[0:n], u4[4:4 + n], u4[8:8 + n], u4[12:12 + n]
    sane = (frac < frac_limit) & (cap <= wire) & (wire <= _PLAUSIBLE_CAPLEN) & (wire > 0) \
        & (np.abs(sec - sec_ref) < 30 * _DAY_S)
    idx = np.flatnonzero(sane)
    nxt = idx + 16 + cap[idx]
    inside = nxt + 16 <= len(arr)
    verified = np.zeros(len(idx), dtype=bool)
    verified[inside] = sane[nxt[inside]]
    verified |= nxt == len(arr)
    pending = idx[~inside & (nxt != len(arr))]
    first_ok = int(idx[verified][0]) if verified.any() else None
    first_pending = int(pending[0]) if len(pending) else None
    if first_ok is not None and (first_pending is None or first_ok < first_pending):
        return start + first_ok, end
    return None, start + (first_pending if first_pending is not None else max(n, 0))
