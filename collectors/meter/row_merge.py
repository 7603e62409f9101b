"""The columns of a chunk's key-sorted rows, written in one compiled pass.

A chunk's rows are the flow table's pseudo rows (flows already in the table whose key comes
back) and the packets, in the merged order of :func:`finsa.collectors.meter.keyed_rows.build_rows`
(``order``: pseudo rows numbered first, packets after them). :func:`merge_rows` writes every
sorted-row column in that order: for a packet its hash, time, direction-split counters and
flags, protocol and hint references; for a pseudo row the flow's own columns; plus whether the
row is a pseudo row, its table slot (-1 for packets) and its time (a flow's last packet time,
a packet's time).

>>> import numpy as np
>>> packets = {"hash": np.array([7, 9], dtype=np.uint64), "t_ms": np.array([10, 11]), "size": np.array([60, 70]),
...            "dir_lo": np.array([True, False]), "tcp_flags": np.array([2, 18], dtype=np.uint8),
...            "protocol": np.array([6, 6], dtype=np.uint8), "hinted": np.zeros(2, dtype=bool),
...            "hint_ref": np.full(2, -1), "hint_tried": np.zeros(2, dtype=np.int64)}
>>> cols, pseudo, slot, t = merge_rows(np.array([1, 0]), packets, None, np.zeros(0, dtype=np.int64))
>>> cols["hash"].tolist(), cols["lo_bytes"].tolist(), cols["hi_flags"].tolist(), pseudo.tolist(), t.tolist()
([9, 7], [0, 60], [18, 0], [False, False], [11, 10])
"""

from __future__ import annotations

import numpy as np

from finsa.collectors.compiled import carray, kernel

__all__ = ["merge_rows", "ROW_DTYPES"]

#: the sorted rows' columns and dtypes (booleans are written through uint8 views)
ROW_DTYPES = {"hash": np.uint64, "first_ms": np.int64, "last_ms": np.int64, "lo_pkts": np.int64,
              "lo_bytes": np.int64, "hi_pkts": np.int64, "hi_bytes": np.int64, "lo_flags": np.int64,
              "hi_flags": np.int64, "src_is_lo": np.bool_, "protocol": np.int64, "hinted": np.bool_,
              "hint_ref": np.int64, "hint_tried": np.int64}
#: packet inputs in the kernel's order, and their dtypes
_PACKET_INPUTS = {"hash": np.uint64, "t_ms": np.int64, "size": np.int64, "dir_lo": np.bool_, "tcp_flags": np.uint8,
                  "protocol": np.uint8, "hinted": np.bool_, "hint_ref": np.int64, "hint_tried": np.int64}
#: pseudo-row (flow table) inputs in the kernel's order, and their dtypes
_TABLE_INPUTS = {"hash": np.uint64, "first_ms": np.int64, "last_ms": np.int64, "lo_pkts": np.int64,
                 "lo_bytes": np.int64, "hi_pkts": np.int64, "hi_bytes": np.int64, "lo_flags": np.uint8,
                 "hi_flags": np.uint8, "src_is_lo": np.bool_, "protocol": np.uint8, "hinted": np.bool_,
                 "hint_ref": np.int64, "hint_tried": np.uint8}


@kernel("void(i64*, i64, i64, i64*, u64*, i64*, i64*, u8*, u8*, u8*, u8*, i64*, i64*, "
        "u64*, i64*, i64*, i64*, i64*, i64*, i64*, u8*, u8*, u8*, u8*, u8*, i64*, u8*, "
        "u64*, i64*, i64*, i64*, i64*, i64*, i64*, i64*, i64*, u8*, i64*, u8*, i64*, i64*, u8*, i64*, i64*)")
def _merge(order_p, n_pseudo, m, slots_p,
           p_hash_p, p_t_p, p_size_p, p_lo_p, p_flags_p, p_proto_p, p_hinted_p, p_ref_p, p_tried_p,
           f_hash_p, f_first_p, f_last_p, f_lop_p, f_lob_p, f_hip_p, f_hib_p, f_lof_p, f_hif_p, f_src_p,
           f_proto_p, f_hinted_p, f_ref_p, f_tried_p,
           hash_p, first_p, last_p, lop_p, lob_p, hip_p, hib_p, lof_p, hif_p, src_p, proto_p, hinted_p, ref_p,
           tried_p, pseudo_p, slot_p, t_p):
    n = m - n_pseudo
    order, slots = carray(order_p, m), carray(slots_p, n_pseudo)
    p_hash, p_t, p_size, p_lo = carray(p_hash_p, n), carray(p_t_p, n), carray(p_size_p, n), carray(p_lo_p, n)
    p_flags, p_proto, p_hinted = carray(p_flags_p, n), carray(p_proto_p, n), carray(p_hinted_p, n)
    p_ref, p_tried = carray(p_ref_p, n), carray(p_tried_p, n)
    f_hash, f_first, f_last = carray(f_hash_p, n_pseudo), carray(f_first_p, n_pseudo), carray(f_last_p, n_pseudo)
    f_lop, f_lob, f_hip, f_hib = carray(f_lop_p, n_pseudo), carray(f_lob_p, n_pseudo), carray(f_hip_p, n_pseudo), \
        carray(f_hib_p, n_pseudo)
    f_lof, f_hif, f_src, f_proto = carray(f_lof_p, n_pseudo), carray(f_hif_p, n_pseudo), carray(f_src_p, n_pseudo), \
        carray(f_proto_p, n_pseudo)
    f_hinted, f_ref, f_tried = carray(f_hinted_p, n_pseudo), carray(f_ref_p, n_pseudo), carray(f_tried_p, n_pseudo)
    hashes, first, last, lo_pkts, lo_bytes = carray(hash_p, m), carray(first_p, m), carray(last_p, m), \
        carray(lop_p, m), carray(lob_p, m)
    hi_pkts, hi_bytes, lo_flags, hi_flags = carray(hip_p, m), carray(hib_p, m), carray(lof_p, m), carray(hif_p, m)
    src_is_lo, protocol, hinted, hint_ref, hint_tried = carray(src_p, m), carray(proto_p, m), carray(hinted_p, m), \
        carray(ref_p, m), carray(tried_p, m)
    pseudo, slot, t = carray(pseudo_p, m), carray(slot_p, m), carray(t_p, m)
    for j in range(m):
        q = order[j]
        if q < n_pseudo:
            hashes[j], first[j], last[j], t[j] = f_hash[q], f_first[q], f_last[q], f_last[q]
            lo_pkts[j], lo_bytes[j], hi_pkts[j], hi_bytes[j] = f_lop[q], f_lob[q], f_hip[q], f_hib[q]
            lo_flags[j], hi_flags[j], src_is_lo[j], protocol[j] = f_lof[q], f_hif[q], f_src[q], f_proto[q]
            hinted[j], hint_ref[j], hint_tried[j] = f_hinted[q], f_ref[q], f_tried[q]
            pseudo[j], slot[j] = 1, slots[q]
            continue
        p = q - n_pseudo
        hashes[j], first[j], last[j], t[j] = p_hash[p], p_t[p], p_t[p], p_t[p]
        if p_lo[p] != 0:
            lo_pkts[j], lo_bytes[j], lo_flags[j], hi_pkts[j], hi_bytes[j], hi_flags[j] = 1, p_size[p], p_flags[p], 0, 0, 0
        else:
            lo_pkts[j], lo_bytes[j], lo_flags[j], hi_pkts[j], hi_bytes[j], hi_flags[j] = 0, 0, 0, 1, p_size[p], p_flags[p]
        src_is_lo[j], protocol[j] = p_lo[p], p_proto[p]
        hinted[j], hint_ref[j], hint_tried[j] = p_hinted[p], p_ref[p], p_tried[p]
        pseudo[j], slot[j] = 0, -1


def _c(col: np.ndarray, dtype) -> np.ndarray:
    """``col`` as a C-contiguous array of ``dtype``, booleans as their uint8 view (for the kernel)."""
    out = np.ascontiguousarray(col, dtype=dtype)
    return out.view(np.uint8) if out.dtype == np.bool_ else out


def merge_rows(order: np.ndarray, packets: dict[str, np.ndarray], table_flows: dict[str, np.ndarray] | None,
               slots: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """(sorted-row columns, pseudo-row mask, table slot per row, row time) for the merged ``order``.

    ``packets``: per packet (packet order) the inputs named in ``_PACKET_INPUTS``; ``table_flows``:
    the pseudo rows' flow columns (``None`` when there are none); ``slots``: their table slots.
    """
    m, n_pseudo = len(order), len(slots)
    if m != n_pseudo + len(packets["hash"]) or (table_flows is None and n_pseudo):
        raise ValueError("merge_rows: the order must cover every pseudo row and packet once")
    cols: dict[str, np.ndarray] = {name: np.empty(m, dtype=dtype) for name, dtype in ROW_DTYPES.items()}
    pseudo, slot, t = np.empty(m, dtype=np.bool_), np.empty(m, dtype=np.int64), np.empty(m, dtype=np.int64)
    flows = table_flows if table_flows is not None else {name: np.zeros(0, dtype=dt) for name, dt in _TABLE_INPUTS.items()}
    _merge(_c(order, np.int64), n_pseudo, m, _c(slots, np.int64),
           *(_c(packets[name], dt) for name, dt in _PACKET_INPUTS.items()),
           *(_c(flows[name], dt) for name, dt in _TABLE_INPUTS.items()),
           *(_c(col, col.dtype) for col in cols.values()), pseudo.view(np.uint8), slot, t)
    return cols, pseudo, slot, t
