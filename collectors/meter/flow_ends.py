"""Where flows end inside one chunk: segmentation of key-sorted rows, one compiled pass.

Rows are sorted by flow key and then arrival; a group of rows with one key is cut into segments,
one per flow, by the profile's rules: an idle gap, the active timeout, a closed TCP connection
(FIN both ways, or RST) that lingers or sees a new SYN, an unanswered SYN. The rows are walked in
order (:func:`segment`, a :func:`finsa.collectors.compiled.kernel`), so a rule that depends on
where the current segment started sees the start the cuts before it made. The first row of a group may be a *pseudo row* that stands for the flow
already in the table (its time is the flow's last packet, ``first_t`` its first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from finsa.collectors.compiled import carray, kernel
from finsa.collectors.meter.profiles import MeterProfile

FIN, SYN, RST, ACK = 1, 2, 4, 16
#: end_reason codes (finsa.wire.END_REASONS); the meter decides them from the flow's columns
REASON_IDLE, REASON_ACTIVE, REASON_FIN, REASON_RST = 0, 1, 2, 3


@dataclass
class Rows:
    """Key-sorted rows of one chunk (pseudo rows first in their group)."""

    hash: np.ndarray
    t: np.ndarray
    first_t: np.ndarray
    protocol: np.ndarray
    lo_pkts: np.ndarray
    hi_pkts: np.ndarray
    lo_flags: np.ndarray
    hi_flags: np.ndarray
    pseudo: np.ndarray
    src_is_lo: np.ndarray


@kernel("void(u64*, i64*, i64*, i64*, i64*, i64*, i64*, i64*, u8*, u8*, i64, i64, i64, i64, i64, i64, i64, u8*)")
def _segment(hash_p, t_p, first_p, proto_p, lop_p, hip_p, lof_p, hif_p, pseudo_p, src_p, n, idle_ms, other_idle_ms,
             active_ms, fin_rst, linger_ms, syn_ms, boundary_p):
    """Mark the first row of every flow, row by row; the state is the current segment's start and
    what its earlier rows saw (RST, FIN each way, packets each way)."""
    hashes, t, first_t, protocol = carray(hash_p, n), carray(t_p, n), carray(first_p, n), carray(proto_p, n)
    lo_pkts, hi_pkts, lo_flags, hi_flags = carray(lop_p, n), carray(hip_p, n), carray(lof_p, n), carray(hif_p, n)
    pseudo, src_is_lo, boundary = carray(pseudo_p, n), carray(src_p, n), carray(boundary_p, n)
    start = 0
    rst = fin_lo = fin_hi = lo_seen = hi_seen = False
    for i in range(n):
        tcp = protocol[i] == 6
        gap = t[i] - t[i - 1] if i > 0 else 0
        idle = other_idle_ms if (other_idle_ms != 0 and not tcp) else idle_ms
        cut = i == 0 or hashes[i] != hashes[i - 1] or gap >= idle
        if not cut:
            cut = t[i] - first_t[start] >= active_ms
            if fin_rst != 0:
                closed = rst or (fin_lo and fin_hi)
                pure_syn = pseudo[i] == 0 and ((lo_flags[i] | hi_flags[i]) & (SYN | ACK)) == SYN
                cut = cut or (closed and (pure_syn or gap >= linger_ms))
            if syn_ms != 0:
                answered = hi_seen if src_is_lo[start] != 0 else lo_seen
                cut = cut or (tcp and not answered and gap >= syn_ms)
        if cut:
            start = i
            rst = fin_lo = fin_hi = lo_seen = hi_seen = False
        boundary[i] = 1 if cut else 0
        if tcp:
            rst = rst or ((lo_flags[i] | hi_flags[i]) & RST) != 0
            fin_lo = fin_lo or (lo_flags[i] & FIN) != 0
            fin_hi = fin_hi or (hi_flags[i] & FIN) != 0
        lo_seen = lo_seen or lo_pkts[i] > 0
        hi_seen = hi_seen or hi_pkts[i] > 0


def _c(col: np.ndarray, dtype) -> np.ndarray:
    out = np.ascontiguousarray(col, dtype=dtype)
    return out.view(np.uint8) if out.dtype == np.bool_ else out


def segment(rows: Rows, profile: MeterProfile) -> np.ndarray:
    """Boundary mask: True on the first row of every flow."""
    n = len(rows.t)
    boundary = np.empty(n, dtype=np.bool_)
    _segment(_c(rows.hash, np.uint64), *(_c(getattr(rows, name), np.int64) for name in
                                         ("t", "first_t", "protocol", "lo_pkts", "hi_pkts", "lo_flags", "hi_flags")),
             _c(rows.pseudo, np.bool_), _c(rows.src_is_lo, np.bool_), n, profile.idle_timeout_ms,
             profile.other_idle_timeout_ms or 0, profile.active_timeout_ms, int(profile.end_on_fin_rst),
             profile.close_linger_ms, profile.syn_timeout_ms or 0, boundary.view(np.uint8))
    return boundary
