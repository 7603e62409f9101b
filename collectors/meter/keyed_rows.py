"""Per-chunk row building for the meter: canonical bidirectional keys and key-sorted rows.

:func:`key_hashes` (:mod:`finsa.collectors.meter.key_hash`) gives each packet its bidirectional
key's 64-bit hash; :func:`sort_keys` (:mod:`finsa.collectors.meter.key_sort`) orders them. :func:`build_rows` lays out the table's pseudo rows and the packets as one set of
columns sorted by key hash (stable, so arrival order is kept inside a key).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from finsa.collectors.meter.flow_ends import Rows
from finsa.collectors.meter.flowtable import HINT_COLUMNS, object_column, put_rows, take_rows
from finsa.collectors.meter.key_hash import key_hashes
from finsa.collectors.meter.key_sort import KeyOrder, sort_keys
from finsa.collectors.meter.row_merge import merge_rows

__all__ = ["key_hashes", "KeyOrder", "sort_keys", "SortedRows", "FIRST_COLUMNS", "build_rows",
           "first_hints"]  # key_hashes, KeyOrder, sort_keys: re-exported, their own modules since they became compiled loops


def _merged_order(keys: KeyOrder, in_table: np.ndarray) -> np.ndarray:
    """Row order of [pseudo rows..., packets...] sorted by hash, each group's pseudo row first.

    Pseudo rows are numbered in hash order (those of the groups ``in_table``), packets after them.
    """
    n = len(keys.order)
    before = np.cumsum(in_table)  # pseudo rows up to and including each group
    n_pseudo = int(before[-1]) if len(before) else 0
    order = np.empty(n + n_pseudo, dtype=np.int64)
    order[np.arange(n) + before[keys.group]] = keys.order + n_pseudo
    groups = np.flatnonzero(in_table)
    order[keys.starts[groups] + before[groups] - 1] = np.arange(n_pseudo)
    return order


@dataclass
class SortedRows:
    seg: Rows
    cols: dict[str, np.ndarray]
    slot: np.ndarray
    hints: dict[str, np.ndarray]  # hint values, indexed by cols["hint_ref"]
    hint_present: np.ndarray  # per hint value row: bit i set where HINT_COLUMNS[i] has a value
    first: "_FirstRows"  # columns needed only at segment starts, gathered on demand


#: columns read only from a flow's first row, and their source in Decoded
FIRST_COLUMNS = {"src_ip": "src_ip", "dst_ip": "dst_ip", "src_port": "src_port", "dst_port": "dst_port",
                 "vlan_id": "vlan_id", "ip_version": "ip_version", "tunnel_kind": "tunnel_kind"}


class _FirstRows:
    """Gathers first-row columns for sorted row numbers from the table flows or the packets."""

    def __init__(self, order: np.ndarray, n_pseudo: int, table_flows: dict, decoded) -> None:
        self.order, self.n_pseudo, self.table_flows = order, n_pseudo, table_flows
        self.decoded = decoded
        self._split: tuple | None = None  # (rows, where each comes from) of the last gather

    def _sources(self, rows: np.ndarray) -> tuple:
        """(table rows or None, their places, packet numbers, their places) of ``rows``, worked
        out once for the columns gathered at the same rows (every first column of a chunk)."""
        if self._split is None or self._split[0] is not rows:
            orig = self.order[rows]
            from_table = orig < self.n_pseudo
            if not from_table.any():
                self._split = (rows, None, None, orig - self.n_pseudo, None)
            else:
                table_at, packet_at = np.flatnonzero(from_table), np.flatnonzero(~from_table)
                self._split = (rows, orig[table_at], table_at, orig[packet_at] - self.n_pseudo, packet_at)
        return self._split[1:]

    def gather(self, name: str, rows: np.ndarray) -> np.ndarray:
        table_rows, table_at, packet_rows, packet_at = self._sources(rows)
        packets = getattr(self.decoded, FIRST_COLUMNS[name])
        if table_rows is None:
            return take_rows(packets, packet_rows)
        source = self.table_flows[name]
        out = np.zeros((len(rows),) + source.shape[1:], dtype=source.dtype)
        put_rows(out, table_at, take_rows(source, table_rows))
        put_rows(out, packet_at, take_rows(packets, packet_rows))
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
