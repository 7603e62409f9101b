"""Per-flow totals of a chunk's key-sorted rows, one compiled pass over the rows.

Each flow (segment) of the sorted rows runs from its start to the next segment's start.
:func:`segment_sums` gives per segment the sums of the packet and byte counters per direction,
the OR of the TCP flags per direction, of the hint flags and of the tried-hint bits, and the
hash, first-row direction and protocol, first time and last time: what ``np.add.reduceat``,
``np.bitwise_or.reduceat`` and gathers at the starts gave, column by column.

>>> import numpy as np
>>> cols = {"lo_pkts": np.array([1, 1, 0]), "lo_bytes": np.array([60, 40, 0]), "hi_pkts": np.array([0, 0, 1]),
...         "hi_bytes": np.array([0, 0, 90]), "lo_flags": np.array([2, 16, 0]), "hi_flags": np.array([0, 0, 18]),
...         "hinted": np.array([False, True, False]), "hint_tried": np.array([0, 4, 1]),
...         "hash": np.array([5, 5, 8], dtype=np.uint64), "src_is_lo": np.array([True, True, False]),
...         "protocol": np.array([6, 6, 6]), "first_ms": np.array([10, 11, 12])}
>>> f = segment_sums(cols, np.array([10, 11, 12]), np.array([0, 2]))
>>> f["lo_pkts"].tolist(), f["lo_flags"].tolist(), f["hinted"].tolist(), f["first_ms"].tolist(), f["last_ms"].tolist()
([2, 0], [18, 0], [True, False], [10, 12], [11, 12])
"""

from __future__ import annotations

import numpy as np

from finsa.collectors.compiled import carray, kernel

__all__ = ["segment_sums"]

_SUMS = ("lo_pkts", "lo_bytes", "hi_pkts", "hi_bytes")
_ORS = ("lo_flags", "hi_flags", "hinted", "hint_tried")
_FIRSTS = ("hash", "src_is_lo", "protocol", "first_ms")
_DTYPES = {"lo_pkts": np.int64, "lo_bytes": np.int64, "hi_pkts": np.int64, "hi_bytes": np.int64,
           "lo_flags": np.int64, "hi_flags": np.int64, "hinted": np.bool_, "hint_tried": np.int64,
           "hash": np.uint64, "src_is_lo": np.bool_, "protocol": np.int64, "first_ms": np.int64}


@kernel("void(i64*, i64, i64, i64*, i64*, i64*, i64*, i64*, i64*, i64*, u8*, i64*, u64*, u8*, i64*, i64*, "
        "i64*, i64*, i64*, i64*, i64*, i64*, u8*, i64*, u64*, u8*, i64*, i64*, i64*)")
def _sums(starts_p, n_seg, m, t_p, lop_p, lob_p, hip_p, hib_p, lof_p, hif_p, hinted_p, tried_p, hash_p, src_p,
          proto_p, first_p, o_lop_p, o_lob_p, o_hip_p, o_hib_p, o_lof_p, o_hif_p, o_hinted_p, o_tried_p,
          o_hash_p, o_src_p, o_proto_p, o_first_p, o_last_p):
    starts, t = carray(starts_p, n_seg), carray(t_p, m)
    lop, lob, hip, hib = carray(lop_p, m), carray(lob_p, m), carray(hip_p, m), carray(hib_p, m)
    lof, hif, hinted, tried = carray(lof_p, m), carray(hif_p, m), carray(hinted_p, m), carray(tried_p, m)
    hashes, src, proto, first = carray(hash_p, m), carray(src_p, m), carray(proto_p, m), carray(first_p, m)
    o_lop, o_lob, o_hip, o_hib = carray(o_lop_p, n_seg), carray(o_lob_p, n_seg), carray(o_hip_p, n_seg), \
        carray(o_hib_p, n_seg)
    o_lof, o_hif, o_hinted, o_tried = carray(o_lof_p, n_seg), carray(o_hif_p, n_seg), carray(o_hinted_p, n_seg), \
        carray(o_tried_p, n_seg)
    o_hash, o_src, o_proto, o_first, o_last = carray(o_hash_p, n_seg), carray(o_src_p, n_seg), \
        carray(o_proto_p, n_seg), carray(o_first_p, n_seg), carray(o_last_p, n_seg)
    for s in range(n_seg):
        a = starts[s]
        b = starts[s + 1] if s + 1 < n_seg else m
        s_lop, s_lob, s_hip, s_hib, s_lof, s_hif, s_hinted, s_tried = 0, 0, 0, 0, 0, 0, 0, 0
        for r in range(a, b):
            s_lop += lop[r]
            s_lob += lob[r]
            s_hip += hip[r]
            s_hib += hib[r]
            s_lof |= lof[r]
            s_hif |= hif[r]
            s_hinted |= hinted[r]
            s_tried |= tried[r]
        o_lop[s], o_lob[s], o_hip[s], o_hib[s] = s_lop, s_lob, s_hip, s_hib
        o_lof[s], o_hif[s], o_hinted[s], o_tried[s] = s_lof, s_hif, 1 if s_hinted else 0, s_tried
        o_hash[s], o_src[s], o_proto[s], o_first[s], o_last[s] = hashes[a], src[a], proto[a], first[a], t[b - 1]


def _c(col: np.ndarray, dtype) -> np.ndarray:
    out = np.ascontiguousarray(col, dtype=dtype)
    return out.view(np.uint8) if out.dtype == np.bool_ else out


def segment_sums(cols: dict[str, np.ndarray], t: np.ndarray, starts: np.ndarray) -> dict[str, np.ndarray]:
    """Per segment (``starts``: first row of each, ascending) the totals named above, plus
    ``last_ms`` (``t`` of the segment's last row)."""
    n_seg, m = len(starts), len(t)
    if n_seg and (starts[0] < 0 or starts[-1] >= m or any(len(cols[name]) != m for name in _DTYPES)):
        raise ValueError("segment_sums: segment starts or columns do not fit the rows")
    out: dict[str, np.ndarray] = {name: np.empty(n_seg, dtype=dtype) for name, dtype in _DTYPES.items()}
    out["last_ms"] = np.empty(n_seg, dtype=np.int64)
    names = (*_SUMS, *_ORS, *_FIRSTS)
    _sums(_c(starts, np.int64), n_seg, m, _c(t, np.int64), *(_c(cols[name], _DTYPES[name]) for name in names),
          *(_c(out[name], out[name].dtype) for name in (*names, "last_ms")))
    return out
