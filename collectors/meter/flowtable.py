"""The flow table of a meter: growable numpy columns, one slot per live flow.

A sorted array of the live flows' 64-bit key hashes, with their slots beside it, is the index
(looked up with ``np.searchsorted``, updated in bulk per chunk); free slots are a numpy stack;
everything else is column arrays of compact dtypes (about 200 bytes per slot with the hint
columns), so there is no Python object per flow, and sweeping for idle flows and exporting them
are vectorised. Counters are kept per key direction ("lo" is the
endpoint that sorts first), and ``src_is_lo`` says which of them sent the flow's first packet;
:func:`to_records` turns that into the wire record's src2dst/dst2src columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from finsa.collectors.compiled import carray, kernel
from finsa.wire import FLOW, RecordBatch

#: per-flow columns and their dtypes (2-D columns are addresses)
COLUMNS: dict[str, Any] = {
    "hash": np.uint64, "first_ms": np.int64, "last_ms": np.int64,
    "lo_pkts": np.int64, "lo_bytes": np.int64, "hi_pkts": np.int64, "hi_bytes": np.int64,
    "lo_flags": np.uint8, "hi_flags": np.uint8, "src_is_lo": bool,
    "src_port": np.uint16, "dst_port": np.uint16, "protocol": np.uint8, "vlan_id": np.uint16,
    "ip_version": np.uint8, "tunnel_kind": np.uint8, "hinted": bool, "hint_tried": np.uint8,
}
ADDRESS_COLUMNS = ("src_ip", "dst_ip")
HINT_COLUMNS = ("dns_query", "dns_qtype", "dns_rcode", "tls_sni", "tls_version", "tls_ja4",
                "http_host", "http_method", "http_uri", "http_status", "ssh_banner")
_HINT_INTS = {"dns_qtype", "dns_rcode", "tls_version", "http_status"}
_HINT_SET = frozenset(HINT_COLUMNS)


def take_rows(col: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``col[rows]`` for integer ``rows``; a 2-D column (addresses) row by row, not byte by byte
    (numpy's fancy indexing of an (n, 16) uint8 array is about 15x slower than ``np.take``)."""
    return np.take(col, rows, axis=0)


def take_flows(flows: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The flows at ``rows`` of a flows dict whose hint columns are compact (values of the
    ``hinted`` rows only, in row order): the same layout for the rows taken.

    >>> f = {"hinted": np.array([False, True, True]), "dns_query": np.array(["a", "b"], dtype=object)}
    >>> take_flows(f, np.array([2, 0]))["dns_query"].tolist()
    ['b']
    """
    hinted = flows["hinted"]
    out = {name: take_rows(col, rows) for name, col in flows.items() if name not in _HINT_SET}
    present = [name for name in HINT_COLUMNS if name in flows]
    if present:
        at = (np.cumsum(hinted) - 1)[rows[hinted[rows]]]
        out.update({name: flows[name][at] for name in present})
    return out


def put_rows(col: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """``col[rows] = values`` for integer ``rows``; a 2-D column as one 16-byte item per row."""
    if col.ndim == 2:
        width = f"V{col.shape[1] * col.itemsize}"
        col.view(width)[:, 0][rows] = np.ascontiguousarray(values, dtype=col.dtype).view(width)[:, 0]
    else:
        col[rows] = values


def object_column(n: int, value: Any = None) -> np.ndarray:
    """``np.full(n, value, dtype=object)`` in one pass (np.full casts the value in a slow path,
    about 10x the time for 200,000 rows).

    >>> object_column(3, "").tolist(), object_column(2).tolist()
    (['', '', ''], [None, None])
    """
    col = np.empty(n, dtype=object)  # numpy fills a new object array with None
    if value is not None:
        col.fill(value)
    return col


def empty_columns(n: int) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {name: np.zeros(n, dtype=dt) for name, dt in COLUMNS.items()}
    for name in ADDRESS_COLUMNS:
        cols[name] = np.zeros((n, 16), dtype=np.uint8)
    for name in HINT_COLUMNS:
        cols[name] = object_column(n)
    return cols


def empty_columns_like(col: np.ndarray, n: int) -> np.ndarray:
    """An empty column of ``n`` rows with ``col``'s dtype and row shape (hints: None)."""
    if col.dtype == object:
        return object_column(n)
    return np.zeros((n,) + col.shape[1:], dtype=col.dtype)


@kernel("void(u64*, i64*, i64, u64*, i64*, i64, u64*, i64*)")
def _merge(keys_p, slots_p, n, new_p, new_slots_p, m, out_p, out_slots_p):
    """Merge the sorted ``keys`` (with their slots) and the sorted ``new`` keys (a new key before an
    equal old one, as ``np.searchsorted``'s left side puts it)."""
    keys, slots, new, new_slots = carray(keys_p, n), carray(slots_p, n), carray(new_p, m), carray(new_slots_p, m)
    out, out_slots = carray(out_p, n + m), carray(out_slots_p, n + m)
    i = j = 0
    for k in range(n + m):
        if j < m and (i >= n or new[j] <= keys[i]):
            out[k], out_slots[k] = new[j], new_slots[j]
            j += 1
        else:
            out[k], out_slots[k] = keys[i], slots[i]
            i += 1


def merge_sorted(keys: np.ndarray, slots: np.ndarray, new: np.ndarray,
                 new_slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted index with ``new`` keys (any order) and their slots inserted: what
    ``np.insert`` at ``np.searchsorted(keys, sorted new)`` gives, in one pass.

    >>> k, s = merge_sorted(np.array([2, 8], np.uint64), np.array([0, 1]), np.array([9, 1, 5], np.uint64), np.array([2, 3, 4]))
    >>> k.tolist(), s.tolist()
    ([1, 2, 5, 8, 9], [3, 0, 4, 1, 2])
    """
    if len(new) > 1 and not (new[1:] >= new[:-1]).all():
        order = np.argsort(new, kind="stable")
        new, new_slots = new[order], new_slots[order]
    n, m = len(keys), len(new)
    out, out_slots = np.empty(n + m, dtype=np.uint64), np.empty(n + m, dtype=np.int64)
    _merge(np.ascontiguousarray(keys, dtype=np.uint64), np.ascontiguousarray(slots, dtype=np.int64), n,
           np.ascontiguousarray(new, dtype=np.uint64), np.ascontiguousarray(new_slots, dtype=np.int64), m,
           out, out_slots)
    return out, out_slots


class FlowTable:
    """Live flows in slots of growable column arrays, indexed by a sorted hash array."""

    def __init__(self, capacity: int = 4096) -> None:
        self.cols = empty_columns(capacity)
        self.live = np.zeros(capacity, dtype=bool)
        self._keys = np.zeros(0, dtype=np.uint64)  # sorted hashes of the live flows
        self._slots = np.zeros(0, dtype=np.int64)  # their slots
        self._free = np.arange(capacity - 1, -1, -1, dtype=np.int64)  # a stack: the top is the end

    def __len__(self) -> int:
        return len(self._keys)

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """Slot of each hash, -1 where the flow is not in the table."""
        if not len(self._keys):
            return np.full(len(hashes), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._keys, hashes), len(self._keys) - 1)
        return np.where(self._keys[at] == hashes, self._slots[at], -1)

    def allocate(self, hashes: np.ndarray) -> np.ndarray:
        """Slots for flows not yet in the table (distinct hashes)."""
        need = len(hashes)
        if need > len(self._free):
            self._grow(need - len(self._free))
        slots = self._free[len(self._free) - need:][::-1].copy()
        self._free = self._free[:len(self._free) - need]
        self._keys, self._slots = merge_sorted(self._keys, self._slots, np.ascontiguousarray(hashes, dtype=np.uint64),
                                               slots)
        self.live[slots] = True
        return slots

    def release(self, slots: np.ndarray) -> None:
        """Free ``slots`` (live, distinct)."""
        if len(slots) == len(self._keys):  # every live flow (a flush): no lookup
            self._keys, self._slots = np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
        else:
            keep = np.ones(len(self._keys), dtype=bool)
            keep[np.searchsorted(self._keys, self.cols["hash"][slots])] = False
            self._keys, self._slots = self._keys[keep], self._slots[keep]
        self.live[slots] = False
        hinted = slots[self.cols["hinted"][slots]]  # the others hold no hint values
        for name in HINT_COLUMNS:
            self.cols[name][hinted] = None
        self._free = np.concatenate([self._free, slots])

    def _grow(self, extra: int) -> None:
        """Double the slots (or more), one column at a time so only one column is copied at once."""
        old = len(self.live)
        new = max(old * 2, old + extra)
        for name in list(self.cols):
            col = self.cols.pop(name)
            grown = empty_columns_like(col, new)
            grown[:old] = col
            del col
            self.cols[name] = grown
        self.live = np.concatenate([self.live, np.zeros(new - old, dtype=bool)])
        self._free = np.concatenate([np.arange(new - 1, old - 1, -1, dtype=np.int64), self._free])

    def store(self, slots: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Write ``values`` into ``slots``. Hint columns are written only for hinted rows; an
        unhinted row's slot holds None there already (new slots, released ones) unless the slot
        was a hinted flow's that ended in this chunk: those are cleared."""
        hinted = values.get("hinted")
        if hinted is None or hinted.all():
            for name, col in values.items():
                put_rows(self.cols[name], slots, col)
            return
        some = np.flatnonzero(hinted)
        plain = slots[~hinted]
        stale = plain[self.cols["hinted"][plain]]
        for name, col in values.items():
            if name in _HINT_SET:
                if len(some):  # a hint column is compact (hinted rows only) or one value per slot
                    put_rows(self.cols[name], slots[some], col if len(col) == len(some) else col[some])
                if len(stale):
                    self.cols[name][stale] = None
                continue
            put_rows(self.cols[name], slots, col)

    def take(self, slots: np.ndarray, hints_where: str = "") -> dict[str, np.ndarray]:
        """Columns of ``slots``; with ``hints_where="compact"`` hint columns hold the values of the
        hinted flows only (in slot order), as :func:`take_flows` and :func:`to_records` expect."""
        if not hints_where:
            return {name: take_rows(col, slots) for name, col in self.cols.items()}
        out = {name: take_rows(col, slots) for name, col in self.cols.items() if name not in HINT_COLUMNS}
        hinted = slots[out["hinted"]]
        for name in HINT_COLUMNS:
            out[name] = self.cols[name][hinted]
        return out


def flow_ids(key_hash: np.ndarray, first_ms: np.ndarray, sensor_hash: int) -> np.ndarray:
    """64-bit flow ids from the key hash, first packet time and sensor (splitmix64 finaliser)."""
    with np.errstate(over="ignore"):
        x = key_hash.astype(np.uint64) ^ (first_ms.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        x ^= np.uint64(sensor_hash)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def to_records(flows: dict[str, np.ndarray], end_reason: np.ndarray | int, institution_id: str,
               sensor_id: str, sensor_hash: int) -> RecordBatch:
    """A FLOW RecordBatch from flow-table columns."""
    n = len(flows["hash"])
    lo = flows["src_is_lo"]
    cols = {
        "flow_id": flow_ids(flows["hash"], flows["first_ms"], sensor_hash),
        "first_seen_ms": flows["first_ms"], "last_seen_ms": flows["last_ms"],
        # whole columns, not scalars: the record type would spread a scalar with np.full (slow for objects)
        "institution_id": object_column(n, institution_id), "sensor_id": object_column(n, sensor_id),
        "src2dst_packets": np.where(lo, flows["lo_pkts"], flows["hi_pkts"]),
        "src2dst_bytes": np.where(lo, flows["lo_bytes"], flows["hi_bytes"]),
        "dst2src_packets": np.where(lo, flows["hi_pkts"], flows["lo_pkts"]),
        "dst2src_bytes": np.where(lo, flows["hi_bytes"], flows["lo_bytes"]),
        "src2dst_tcp_flags": np.where(lo, flows["lo_flags"], flows["hi_flags"]),
        "dst2src_tcp_flags": np.where(lo, flows["hi_flags"], flows["lo_flags"]),
        "end_reason": np.broadcast_to(np.asarray(end_reason, dtype=np.uint8), (n,)),
    }
    for name in ("src_ip", "dst_ip", "src_port", "dst_port", "protocol", "vlan_id", "ip_version",
                 "tunnel_kind"):
        cols[name] = flows[name]
    hinted = np.flatnonzero(flows["hinted"])
    for name in HINT_COLUMNS:
        vals = flows[name][hinted] if len(flows[name]) == n else flows[name]  # one per flow, or compact
        have = np.not_equal(vals, None)  # type: ignore[call-overload]  # numpy's stubs refuse None in object arrays
        if name in _HINT_INTS:
            col = np.zeros(n, dtype=np.int64)
            col[hinted[have]] = vals[have].astype(np.int64)
        else:
            col = object_column(n, "")
            col[hinted[have]] = vals[have]
        cols[name] = col
    return FLOW.make_batch(cols, n_rows=n)
