"""Framing of classic pcap records, vectorised: where every record header of a buffer starts.

Records are variable length, so finding them is a walk (each header's captured length gives the
next header). :func:`frame_records` cuts the buffer into *lanes*, seeds every lane at a plausible
record header found near its nominal start, walks all lanes in lockstep with numpy, then checks
that each lane's walk lands exactly on the next lane's seed. A seed that only looks like a header
(payload bytes) is caught by that check and the walk resumes from the last verified position, so
the result is always exactly the chain from the first record: seeds only decide the speed.
Short buffers and the tail after the last lane are walked record by record. After a corrupt
record length, :func:`resync` finds the next plausible record (two chained sane headers), so a
reader loses the corrupt record, not the rest of the file.

>>> import struct
>>> rec = struct.pack("<IIII", 1_700_000_000, 5, 4, 60) + b"abcd"
>>> heads, end, framed = frame_records(rec * 3 + rec[:10], 0, 3 * 20 + 10, "<", 1_000_000)
>>> heads.tolist(), end, framed
([0, 20, 40], 60, True)
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = ["frame_records", "resync", "u32_at", "MAX_RECORD_BYTES"]

MAX_RECORD_BYTES = 256 << 20
_LANE_BYTES = 32 << 10  # nominal bytes walked per lane
_MAX_LANES = 4096
_MIN_LANE_BYTES = 256 << 10  # below this many bytes the plain walk is cheaper
_SEED_WINDOW = 4096  # bytes searched for a lane's seed
_PLAUSIBLE_CAPLEN = 262_144
_DAY_S = 86_400


def u32_at(arr: np.ndarray, order: str) -> np.ndarray:
    """An unaligned uint32 view with one element starting at every byte of ``arr``."""
    n = max(len(arr) - 3, 0)
    return np.ndarray((n,), dtype=order + "u4", buffer=arr, offset=0, strides=(1,)) if n else \
        np.zeros(0, dtype=order + "u4")


def _walk(buf, pos: int, end: int, cap_at) -> tuple[list[int], int, bool]:
    """Record-header positions from ``pos`` while whole records fit before ``end`` (record by record)."""
    heads: list[int] = []
    append = heads.append
    while pos + 16 <= end:
        (cap,) = cap_at(buf, pos + 8)
        if cap > MAX_RECORD_BYTES:
            return heads, pos, False
        nxt = pos + 16 + cap
        if nxt > end:
            break
        append(pos)
        pos = nxt
    return heads, pos, True


class _Seeder:
    """Finds a plausible record header near a position: the first record's ts_sec high bytes, then
    two consecutive headers with sane fractions, lengths and times."""

    def __init__(self, buf, first: int, end: int, order: str, frac_limit: int) -> None:
        self.buf, self.end, self.frac_limit = buf, end, frac_limit
        self.unpack = struct.Struct(order + "IIII").unpack_from
        self.pat_off = 2 if order == "<" else 0
        self.pattern = bytes(buf[first + self.pat_off:first + self.pat_off + 2])
        self.sec0 = self.unpack(buf, first)[0]

    def _sane(self, pos: int) -> tuple[bool, int]:
        sec, frac, cap, wire = self.unpack(self.buf, pos)
        ok = frac < self.frac_limit and cap <= wire and cap <= _PLAUSIBLE_CAPLEN and abs(sec - self.sec0) < 30 * _DAY_S
        return ok, pos + 16 + cap

    def seed(self, lo: int) -> int | None:
        hi = min(lo + _SEED_WINDOW, self.end - 32)
        at = self.buf.find(self.pattern, lo + self.pat_off, hi + self.pat_off)
        while at >= 0:
            pos = at - self.pat_off
            ok, nxt = self._sane(pos)
            if ok and (nxt + 16 > self.end or self._sane(nxt)[0]):
                return pos
            at = self.buf.find(self.pattern, at + 1, hi + self.pat_off)
        return None


def _lockstep(u4: np.ndarray, seeds: np.ndarray, end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walk every lane from its seed to the next seed: (lane-major head matrix, lane end, lane broke)."""
    k = len(seeds)
    stop = np.append(seeds[1:], end)
    lane_end = np.zeros(k, dtype=np.int64)
    broke = np.zeros(k, dtype=bool)
    alive = np.arange(k)
    p = seeds.copy()
    rows = []
    last = len(u4) - 1
    while len(alive):
        cap = u4[np.minimum(p + 8, last)].astype(np.int64)
        nxt = p + 16 + cap
        fits = (p + 16 <= end) & (cap <= MAX_RECORD_BYTES) & (nxt <= end)
        row = np.full(k, -1, dtype=np.int64)
        row[alive[fits]] = p[fits]
        rows.append(row)
        go_on = fits & (nxt < stop[alive])
        done = ~go_on
        lane_end[alive[done]] = np.where(fits[done], nxt[done], p[done])
        broke[alive[~fits]] = True
        alive, p = alive[go_on], nxt[go_on]
    return np.stack(rows, axis=1), lane_end, broke


def _lanes(buf, arr: np.ndarray, u4: np.ndarray, pos: int, end: int, order: str,
           frac_limit: int) -> tuple[np.ndarray, int]:
    """Heads of the verified lanes from ``pos`` and where the last verified lane stopped."""
    n_lanes = int(min(_MAX_LANES, max(1, (end - pos) // _LANE_BYTES)))
    seeder = _Seeder(buf, pos, end, order, frac_limit)
    step = (end - pos) // n_lanes
    seeds = [pos]
    for i in range(1, n_lanes):
        s = seeder.seed(pos + i * step)
        if s is not None and s > seeds[-1]:
            seeds.append(s)
    heads, lane_end, broke = _lockstep(u4, np.array(seeds, dtype=np.int64), end)
    ends, broken = lane_end.tolist(), broke.tolist()
    good, cur = 0, pos
    while good < len(seeds) and seeds[good] == cur:
        cur = ends[good]
        good += 1
        if broken[good - 1]:
            break
    out = heads[:good].ravel()
    return out[out >= 0], cur


def frame_records(buf, pos: int, end: int, order: str, frac_limit: int) -> tuple[np.ndarray, int, bool]:
    """Header positions of the whole records in ``buf[pos:end]``.

    Returns (int64 positions, position after the last whole record, False if framing broke on an
    absurd captured length). ``buf`` is bytes-like with ``find`` (bytes, mmap).
    """
    cap_at = struct.Struct(order + "I").unpack_from
    arr = np.frombuffer(buf, dtype=np.uint8, count=end) if end else np.zeros(0, dtype=np.uint8)
    parts: list[np.ndarray] = []
    u4 = None
    for _round in range(8):
        if end - pos < _MIN_LANE_BYTES:
            break
        u4 = u32_at(arr, order) if u4 is None else u4
        heads, nxt = _lanes(buf, arr, u4, pos, end, order, frac_limit)
        parts.append(heads)
        if nxt - pos < _MIN_LANE_BYTES // 4:
            pos = nxt
            break
        pos = nxt
    tail, pos, framed = _walk(buf, pos, end, cap_at)
    parts.append(np.array(tail, dtype=np.int64))
    return (np.concatenate(parts) if len(parts) > 1 else parts[0]), pos, framed


def resync(buf, start: int, end: int, order: str, frac_limit: int, sec_ref: int) -> tuple[int | None, int]:
    """The first position in ``buf[start:end]`` holding a sane record header whose next header
    is sane too (or that ends exactly at ``end``), as ``(position, _)``; else ``(None, keep)``:
    more data is needed from ``keep`` on (a candidate whose follower is not in the buffer yet).

    Sane: fraction below ``frac_limit``, captured <= wire length <= a plausible snap length,
    seconds within 30 days of ``sec_ref`` (a good record's time).

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
