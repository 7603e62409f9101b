"""Where flows end inside one chunk: segmentation of key-sorted rows, vectorised.

Rows are sorted by flow key and then arrival; a group of rows with one key is cut into segments,
one per flow, by the profile's rules: an idle gap, the active timeout, a closed TCP connection
(FIN both ways, or RST) that lingers or sees a new SYN, an unanswered SYN. Rules that depend on
where the current segment started are applied one cut per segment per pass until nothing changes,
so every cut is exact. The first row of a group may be a *pseudo row* that stands for the flow
already in the table (its time is the flow's last packet, ``first_t`` its first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def _seen_before(flag: np.ndarray, start_of_row: np.ndarray) -> np.ndarray:
    """True where ``flag`` held on an earlier row of the same segment."""
    idx = np.where(flag, np.arange(len(flag)), -1)
    last = np.maximum.accumulate(idx)
    prev = np.concatenate([[-1], last[:-1]])
    return prev >= start_of_row


def _idle_timeouts(rows: Rows, profile: MeterProfile) -> np.ndarray:
    idle = np.full(len(rows.t), profile.idle_timeout_ms, dtype=np.int64)
    if profile.other_idle_timeout_ms:
        idle[rows.protocol != 6] = profile.other_idle_timeout_ms
    return idle


def segment(rows: Rows, profile: MeterProfile) -> np.ndarray:
    """Boundary mask: True on the first row of every flow."""
    n = len(rows.t)
    group_start = np.ones(n, dtype=bool)
    group_start[1:] = rows.hash[1:] != rows.hash[:-1]
    gap = np.zeros(n, dtype=np.int64)
    gap[1:] = rows.t[1:] - rows.t[:-1]
    boundary = group_start | (gap >= _idle_timeouts(rows, profile))
    idx = np.arange(n)
    tcp = rows.protocol == 6
    packet_flags = rows.lo_flags | rows.hi_flags
    pure_syn = ~rows.pseudo & ((packet_flags & (SYN | ACK)) == SYN)
    while True:
        starts = np.flatnonzero(boundary)
        seg = np.cumsum(boundary) - 1
        start_of_row = starts[seg]
        active = rows.t - rows.first_t[start_of_row] >= profile.active_timeout_ms
        cut = active.copy()
        if profile.end_on_fin_rst:
            rst = _seen_before(tcp & (((rows.lo_flags | rows.hi_flags) & RST) != 0), start_of_row)
            fin_lo = _seen_before(tcp & ((rows.lo_flags & FIN) != 0), start_of_row)
            fin_hi = _seen_before(tcp & ((rows.hi_flags & FIN) != 0), start_of_row)
            closed = rst | (fin_lo & fin_hi)
            cut |= closed & (pure_syn | (gap >= profile.close_linger_ms))
        if profile.syn_timeout_ms:
            lo_seen = _seen_before(rows.lo_pkts > 0, start_of_row)
            hi_seen = _seen_before(rows.hi_pkts > 0, start_of_row)
            answered = np.where(rows.src_is_lo[start_of_row], hi_seen, lo_seen)
            cut |= tcp & ~answered & (idx > start_of_row) & (gap >= profile.syn_timeout_ms)
        cut &= ~boundary
        if not cut.any():
            return boundary
        cut_rows = np.flatnonzero(cut)
        _, first = np.unique(seg[cut_rows], return_index=True)
        chosen = cut_rows[first]
        boundary[chosen] = True

