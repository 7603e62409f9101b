"""Per-chunk row building for the meter: canonical bidirectional keys and key-sorted rows.

:func:`key_hashes` (:mod:`finsa.collectors.meter.key_hash`) gives each packet its bidirectional
key's 64-bit hash; :func:`sort_keys` (:mod:`finsa.collectors.meter.key_sort`) orders them. :func:`build_rows` lays out the table's pseudo rows and the packets as one set of
columns sorted by key hash (stable, so arrival order is kept inside a key).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from finsa.collectors.compiled import carray, kernel
from finsa.collectors.meter.flow_ends import Rows
from finsa.collectors.meter.flowtable import HINT_COLUMNS, object_column
from finsa.collectors.meter.key_hash import key_hashes
from finsa.collectors.meter.key_sort import KeyOrder, sort_keys
from finsa.collectors.meter.row_merge import merge_rows

__all__ = ["key_hashes", "KeyOrder", "sort_keys", "SortedRows", "FIRST_COLUMNS", "build_rows",
           "first_hints"]  # key_hashes, KeyOrder, sort_keys: re-exported, their own modules since they became compiled loops


@kernel("void(i64*, i64*, i64, u8*, i64, i64*)")
def _merge_order(order_p, group_p, n, in_table_p, n_groups, out_p):
    """Walk the sorted packets; before each group's first packet put its pseudo row if it has one."""
    order, group, in_table = carray(order_p, n), carray(group_p, n), carray(in_table_p, n_groups)
    n_pseudo = 0
    for g in range(n_groups):
        if in_table[g] != 0:
            n_pseudo += 1
    out = carray(out_p, n + n_pseudo)
    j = pseudo = 0
    last = -1
    for i in range(n):
        g = group[i]
        if g != last:
            last = g
            if in_table[g] != 0:
                out[j] = pseudo
                pseudo += 1
                j += 1
        out[j] = order[i] + n_pseudo
        j += 1


def _merged_order(keys: KeyOrder, in_table: np.ndarray) -> np.ndarray:
    """Row order of [pseudo rows..., packets...] sorted by hash, each group's pseudo row first.

    Pseudo rows are numbered in hash order (those of the groups ``in_table``), packets after them.

    >>> keys = sort_keys(np.array([9, 3, 9, 5], dtype=np.uint64))
    >>> _merged_order(keys, np.array([False, True, True])).tolist()
    [3, 0, 5, 1, 2, 4]
    """
    n = len(keys.order)
    in_table = np.ascontiguousarray(in_table, dtype=np.bool_).view(np.uint8)
    order = np.empty(n + int(np.count_nonzero(in_table)), dtype=np.int64)
    _merge_order(np.ascontiguousarray(keys.order, dtype=np.int64), np.ascontiguousarray(keys.group, dtype=np.int64),
                 n, in_table, len(in_table), order)
    return order


@dataclass
class SortedRows:
    seg: Rows
    cols: dict[str, np.ndarray]
    slot: np.ndarray
    hints: dict[str, np.ndarray]  # hint values, indexed by cols["hint_ref"]
    hint_present: np.ndarray  # per hint value row: bit i set where HINT_COLUMNS[i] has a value
    first: "_FirstRows"  # columns needed only at segment starts, gathered on demand


#: columns read only from a flow's first row (the same names in the flow table and in Decoded), and
#: their dtypes (the table's and the decoder's: addresses are 16 bytes a row), in the kernel's order
FIRST_COLUMNS = {"src_ip": np.uint8, "dst_ip": np.uint8, "src_port": np.uint16, "dst_port": np.uint16,
                 "vlan_id": np.uint16, "ip_version": np.uint8, "tunnel_kind": np.uint8}
_ADDRESS_FIRST = ("src_ip", "dst_ip")


_FIRST_SIG = ", ".join(["u64*", "u64*", "u16*", "u16*", "u16*", "u8*", "u8*"] * 3)


@kernel(f"void(i64*, i64, i64*, i64, i64, i64, {_FIRST_SIG})")
def _gather_first(order_p, m, rows_p, k, n_pseudo, n_packets,
                  t_src_p, t_dst_p, t_sport_p, t_dport_p, t_vlan_p, t_ver_p, t_tun_p,
                  p_src_p, p_dst_p, p_sport_p, p_dport_p, p_vlan_p, p_ver_p, p_tun_p,
                  src_p, dst_p, sport_p, dport_p, vlan_p, ver_p, tun_p):
    """Per sorted row of ``rows``: its first-row columns from the table flow (a pseudo row) or the packet."""
    rows = carray(rows_p, k)
    src, dst, sport, dport = carray(src_p, 2 * k), carray(dst_p, 2 * k), carray(sport_p, k), carray(dport_p, k)
    vlan, ver, tun = carray(vlan_p, k), carray(ver_p, k), carray(tun_p, k)
    order = carray(order_p, m)
    t_src, t_dst, t_sport, t_dport = carray(t_src_p, 2 * n_pseudo), carray(t_dst_p, 2 * n_pseudo), \
        carray(t_sport_p, n_pseudo), carray(t_dport_p, n_pseudo)
    t_vlan, t_ver, t_tun = carray(t_vlan_p, n_pseudo), carray(t_ver_p, n_pseudo), carray(t_tun_p, n_pseudo)
    p_src, p_dst, p_sport, p_dport = carray(p_src_p, 2 * n_packets), carray(p_dst_p, 2 * n_packets), \
        carray(p_sport_p, n_packets), carray(p_dport_p, n_packets)
    p_vlan, p_ver, p_tun = carray(p_vlan_p, n_packets), carray(p_ver_p, n_packets), carray(p_tun_p, n_packets)
    for i in range(k):
        q = order[rows[i]]
        if q < n_pseudo:
            src[2 * i], src[2 * i + 1], dst[2 * i], dst[2 * i + 1] = t_src[2 * q], t_src[2 * q + 1], t_dst[2 * q], \
                t_dst[2 * q + 1]
            sport[i], dport[i], vlan[i], ver[i], tun[i] = t_sport[q], t_dport[q], t_vlan[q], t_ver[q], t_tun[q]
        else:
            p = q - n_pseudo
            src[2 * i], src[2 * i + 1], dst[2 * i], dst[2 * i + 1] = p_src[2 * p], p_src[2 * p + 1], p_dst[2 * p], \
                p_dst[2 * p + 1]
            sport[i], dport[i], vlan[i], ver[i], tun[i] = p_sport[p], p_dport[p], p_vlan[p], p_ver[p], p_tun[p]


def _flat(col: np.ndarray) -> np.ndarray:
    """A column as the kernel reads it: an address column (16 bytes a row) as two uint64 words a row."""
    return col.reshape(-1).view(np.uint64) if col.ndim == 2 else col


class _FirstRows:
    """Gathers first-row columns for sorted row numbers from the table flows or the packets."""

    def __init__(self, order: np.ndarray, n_pseudo: int, table_flows: dict, decoded) -> None:
        self.order, self.n_pseudo, self.table_flows = order, n_pseudo, table_flows
        self.decoded = decoded

    def gather_all(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Every :data:`FIRST_COLUMNS` column at the sorted ``rows``, in one compiled pass."""
        k = len(rows)
        out = {name: np.empty((k, 16) if name in _ADDRESS_FIRST else k, dtype=dtype)
               for name, dtype in FIRST_COLUMNS.items()}
        table = [np.ascontiguousarray(self.table_flows[name], dtype=dtype) for name, dtype in FIRST_COLUMNS.items()]
        packets = [np.ascontiguousarray(getattr(self.decoded, name), dtype=dtype) for name, dtype in FIRST_COLUMNS.items()]
        _gather_first(np.ascontiguousarray(self.order, dtype=np.int64), len(self.order),
                      np.ascontiguousarray(rows, dtype=np.int64), k, self.n_pseudo, len(self.decoded),
                      *map(_flat, table), *map(_flat, packets), *map(_flat, out.values()))
        return out


def _packet_inputs(decoded, t_ms, size, hashes, dir_lo, hints, n_pseudo_hinted: int) -> dict[str, np.ndarray]:
    """Per packet (packet order) what :func:`merge_rows` reads: the hint columns are set here for
    the hinted and tried packets; a packet's hint reference counts after the pseudo rows' values."""
    n = len(hashes)
    cols = {"hash": hashes, "t_ms": t_ms, "size": size, "dir_lo": dir_lo, "tcp_flags": decoded.tcp_flags,
            "protocol": decoded.protocol, "hinted": np.zeros(n, dtype=bool), "hint_ref": np.full(n, -1, dtype=np.int64),
            "hint_tried": np.zeros(n, dtype=np.int64)}
    if hints is not None:
        cols["hinted"][hints.rows] = True
        cols["hint_tried"][hints.tried_rows] = hints.tried_bits
        cols["hint_ref"][hints.rows] = np.arange(len(hints.rows)) + n_pseudo_hinted
    return cols


def _hint_side(table_flows: dict[str, np.ndarray], hints) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Hint values of hinted pseudo rows then of hinted packets, the pseudo rows' refs, and per
    value row the bits of the hint columns that hold a value (bit i: ``HINT_COLUMNS[i]``)."""
    pseudo = np.flatnonzero(table_flows["hinted"])
    n_packets = 0 if hints is None else len(hints.rows)
    side = {}
    present = np.zeros(len(pseudo) + n_packets, dtype=np.int64)
    if hints is not None:
        present[len(pseudo):] = hints.present
    for bit, name in enumerate(HINT_COLUMNS):
        col = object_column(len(pseudo) + n_packets)
        vals = table_flows[name]  # compact (hinted rows only) or one per row
        col[:len(pseudo)] = vals if len(vals) == len(pseudo) else vals[pseudo]
        present[:len(pseudo)] |= np.not_equal(col[:len(pseudo)], None).astype(np.int64) << bit  # type: ignore[call-overload]  # numpy's stubs refuse None in object arrays
        if hints is not None and name in hints.values:
            col[len(pseudo):] = hints.values[name]
        side[name] = col
    refs = np.full(len(table_flows["hinted"]), -1, dtype=np.int64)
    refs[pseudo] = np.arange(len(pseudo))
    return refs, side, present


def build_rows(table_flows: dict[str, np.ndarray], slots: np.ndarray, in_table: np.ndarray, keys: KeyOrder,
               decoded, t_ms: np.ndarray, size: np.ndarray, hashes: np.ndarray, dir_lo: np.ndarray,
               hints) -> SortedRows:
    """Pseudo rows (flows in the table, at ``slots``: the groups ``in_table``) and packets, sorted by
    key hash (pseudo row first in its group, then packets in arrival order)."""
    pseudo_refs, side, present = _hint_side(table_flows, hints)
    n_pseudo = len(slots)
    n_pseudo_hinted = len(side["dns_query"]) - (0 if hints is None else len(hints.rows))
    packets = _packet_inputs(decoded, t_ms, size, hashes, dir_lo, hints, n_pseudo_hinted)
    table_flows = dict(table_flows, hint_ref=pseudo_refs)
    order = _merged_order(keys, in_table)
    cols, pseudo, slot, t = merge_rows(order, packets, table_flows if n_pseudo else None, slots)
    first = _FirstRows(order, n_pseudo, table_flows, decoded)
    seg = Rows(cols["hash"], t, cols["first_ms"], cols["protocol"], cols["lo_pkts"], cols["hi_pkts"],
               cols["lo_flags"], cols["hi_flags"], pseudo, cols["src_is_lo"])
    return SortedRows(seg, cols, slot, side, present, first)


def first_hints(rows: SortedRows, starts: np.ndarray, hinted: np.ndarray) -> dict[str, np.ndarray]:
    """Per hinted segment (``hinted``: one per segment), the first non-empty value of each hint
    column: compact columns, one value per hinted segment in segment order.

    Hinted rows are in segment order, so the first row of a segment holding a column's value is
    where the segment number changes among the rows whose present bit for that column is set.
    """
    at = np.cumsum(hinted) - 1  # a hinted segment's place in the compact columns
    out = {name: object_column(int(at[-1]) + 1 if len(at) else 0) for name in HINT_COLUMNS}
    where = np.flatnonzero(rows.cols["hint_ref"] >= 0)
    if not len(where):
        return out
    refs = rows.cols["hint_ref"][where]
    seg_of = np.searchsorted(starts, where, side="right") - 1
    present = rows.hint_present[refs]
    for bit, name in enumerate(HINT_COLUMNS):
        sel = np.flatnonzero(present & (1 << bit))
        if not len(sel):
            continue
        segs = seg_of[sel]
        first = np.ones(len(sel), dtype=bool)
        first[1:] = segs[1:] != segs[:-1]
        out[name][at[segs[first]]] = rows.hints[name][refs[sel[first]]]
    return out
