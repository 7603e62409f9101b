"""Vectorised flow features for the detectors: one numpy pass per batch, no per-flow objects.

* :class:`FlowFrame` derives, once per batch, what every detector needs: 64-bit hashes of the
  addresses (keys that group by institution and host), flow time, and the connection outcome
  (``failed``: a SYN that got no answer or a RST; ``syn_only``: the client never sent ACK).
  :func:`frame_of` caches the frame of the last batch, so detectors run by one engine share it.
* :func:`group` / :func:`distinct_per_group` are the grouping primitives (an unstable sort of
  64-bit keys, what ``np.unique`` with ``return_index``/``return_inverse`` gives; ``np.bincount``); :func:`source_features`,
  :func:`service_features` and :func:`pair_features` are the per-entity window features.
* :class:`KeyedTable` (from :mod:`finsa.detectors.state`) keeps numeric state per 64-bit key (hash-indexed rows);
  :class:`DampedStats` holds Kitsune-style damped counts and byte means per source at a few
  time scales (weights decay as ``2 ** (-dt / half_life)`` in flow time).

Keys are hashes: two different entities collide with probability ~n^2 / 2^64 (negligible).

>>> from finsa.wire import FLOW
>>> b = FLOW.make_batch({"src_ip": ["10.0.0.1"] * 3 + ["10.0.0.2"], "dst_ip": ["10.0.0.9"] * 4,
...                      "dst_port": [22, 23, 24, 22], "protocol": [6] * 4,
...                      "src2dst_tcp_flags": [2, 2, 2, 18], "dst2src_packets": [0, 0, 0, 3],
...                      "institution_id": ["bank-a"] * 4})
>>> groups, feats = source_features(frame_of(b))
>>> sorted(zip(feats["flows"].tolist(), feats["distinct_ports"].tolist(), feats["failed"].tolist()))
[(1, 1, 0), (3, 3, 3)]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from finsa.detectors.state import KeyedTable, isin_keys, unique_first
from finsa.wire import RecordBatch

__all__ = ["FlowFrame", "frame_of", "mix64", "ip_hash", "Groups", "group", "distinct_per_group",
           "isin_keys", "source_features", "service_features", "pair_features", "KeyedTable", "DampedStats",
           "SYN", "RST", "ACK"]

FIN, SYN, RST, ACK = 1, 2, 4, 16
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def mix64(*columns: np.ndarray) -> np.ndarray:
    """One well-mixed uint64 key per row from integer columns (splitmix64 chaining), computed in
    place in one array and one scratch array (no temporary per step).

    >>> mix64(np.array([1, 2], np.uint64)).tolist() == mix64(np.array([1, 2])).tolist()
    True
    """
    acc = np.zeros(len(columns[0]), dtype=np.uint64)
    scratch = np.empty_like(acc)
    with np.errstate(over="ignore"):
        for col in columns:
            np.multiply(acc, _M1, out=acc)
            np.add(acc, np.asarray(col).astype(np.uint64, copy=False), out=acc)
            for mul, shift in ((_M2, _S30), (_M3, _S27), (None, _S31)):  # x ^= x >> s, then x *= m
                np.right_shift(acc, shift, out=scratch)
                np.bitwise_xor(acc, scratch, out=acc)
                if mul is not None:
                    np.multiply(acc, mul, out=acc)
    return acc


def ip_hash(column: np.ndarray) -> np.ndarray:
    """A uint64 hash per (n, 16) address row."""
    halves = np.ascontiguousarray(column, dtype=np.uint8).view("<u8").reshape(-1, 2)
    return mix64(halves[:, 0], halves[:, 1])


def _name_hash(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


class FlowFrame:
    """Derived columns of one flow batch, computed lazily and once."""

    def __init__(self, batch: RecordBatch) -> None:
        self.batch = batch
        self.cols = batch.columns
        self.n = len(batch)

    @cached_property
    def _institutions(self) -> tuple[list[str], np.ndarray]:
        inst = self.cols["institution_id"]
        if self.n and (inst == inst[0]).all():
            return [str(inst[0])], np.zeros(self.n, dtype=np.int64)
        # A few distinct values: dict.fromkeys and map run the per-row loops in C (equal strings
        # held by different objects are one key; a non-str value is named by its str()).
        values = inst.tolist()
        lookup: dict[str, int] = {}
        code_of = {v: lookup.setdefault(str(v), len(lookup)) for v in dict.fromkeys(values)}
        return list(lookup), np.fromiter(map(code_of.__getitem__, values), dtype=np.int64, count=self.n)

    @property
    def inst_names(self) -> list[str]:
        return self._institutions[0]

    @property
    def inst_code(self) -> np.ndarray:
        """Index into :attr:`inst_names` per row."""
        return self._institutions[1]

    @cached_property
    def inst_hash(self) -> np.ndarray:
        """A per-row uint64 hash of the institution id, stable across batches and processes."""
        table = np.array([_name_hash(n) for n in self.inst_names], dtype=np.uint64)
        return table[self.inst_code]

    @cached_property
    def src_h(self) -> np.ndarray:
        return ip_hash(self.cols["src_ip"])

    @cached_property
    def dst_h(self) -> np.ndarray:
        return ip_hash(self.cols["dst_ip"])

    @cached_property
    def src_key(self) -> np.ndarray:
        """(institution, source host) key."""
        return mix64(self.inst_hash, self.src_h)

    @cached_property
    def service_key(self) -> np.ndarray:
        """(institution, destination host, protocol, destination port) key."""
        return mix64(self.inst_hash, self.dst_h, self.cols["protocol"], self.cols["dst_port"])

    @cached_property
    def dst_service(self) -> np.ndarray:
        """(destination host, protocol, port) without the institution: a value to count distinct."""
        return mix64(self.dst_h, self.cols["protocol"], self.cols["dst_port"])

    @cached_property
    def t_ms(self) -> np.ndarray:
        """Flow time used for windows: the first packet's time."""
        return self.cols["first_seen_ms"].astype(np.int64, copy=False)

    @cached_property
    def end_ms(self) -> np.ndarray:
        return np.maximum(self.cols["last_seen_ms"].astype(np.int64, copy=False), self.t_ms)

    @cached_property
    def tcp(self) -> np.ndarray:
        return self.cols["protocol"] == 6

    @cached_property
    def failed(self) -> np.ndarray:
        """TCP connection attempts that failed: SYN without SYN-ACK (no answer, or RST back)."""
        c = self.cols
        syn = (c["src2dst_tcp_flags"] & SYN) != 0
        no_answer = (c["dst2src_packets"] == 0) | ((c["dst2src_tcp_flags"] & RST) != 0)
        return self.tcp & syn & no_answer

    @cached_property
    def syn_only(self) -> np.ndarray:
        """TCP flows whose client sent SYN but never ACK (unanswered or half-open)."""
        f = self.cols["src2dst_tcp_flags"]
        return self.tcp & ((f & SYN) != 0) & ((f & ACK) == 0)

    def source_windows(self, window_ms: int) -> "Groups":
        """Rows grouped by (institution, source host, tumbling window of ``window_ms`` by first
        packet), computed once per batch for every detector that counts flows per source and
        window (read-only: shared)."""
        memo = self.__dict__.setdefault("_source_windows", {})
        if window_ms not in memo:
            memo[window_ms] = group(mix64(self.src_key, self.t_ms // window_ms))
        return memo[window_ms]

    @cached_property
    def bytes(self) -> np.ndarray:
        return (self.cols["src2dst_bytes"] + self.cols["dst2src_bytes"]).astype(np.float64)

    @cached_property
    def packets(self) -> np.ndarray:
        return (self.cols["src2dst_packets"] + self.cols["dst2src_packets"]).astype(np.float64)


_LAST: list = [None]  # the last frame; replaced whole, so threads never see a torn pair


def frame_of(batch: RecordBatch) -> FlowFrame:
    """The :class:`FlowFrame` of ``batch``, shared with the previous caller for the same batch."""
    last = _LAST[0]
    if last is not None and last.batch is batch and last.n == len(batch):
        return last
    frame = FlowFrame(batch)
    _LAST[0] = frame
    return frame


@dataclass
class Groups:
    """Rows grouped by key: ``keys[inverse[i]]`` is row i's key, ``first`` a representative row."""

    keys: np.ndarray
    inverse: np.ndarray
    first: np.ndarray
    count: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    def sum(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.inverse, weights=values, minlength=len(self.keys))

    def max(self, values: np.ndarray) -> np.ndarray:
        out = np.full(len(self.keys), np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(out, self.inverse, values)
        return out

    def min(self, values: np.ndarray) -> np.ndarray:
        out = np.full(len(self.keys), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(out, self.inverse, values)
        return out

    def rows_of(self, g: int, limit: int) -> np.ndarray:
        """Up to ``limit`` row indices of group ``g`` (for evidence; not for hot loops)."""
        return np.flatnonzero(self.inverse == g)[:limit]


def group(keys: np.ndarray) -> Groups:
    """Group rows by a uint64 key."""
    uniq, first, inverse, count = unique_first(keys)
    return Groups(uniq, inverse.ravel(), first, count)


def distinct_per_group(groups: Groups, values: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Number of distinct ``values`` (integers) in each group (over ``rows`` only, when given)."""
    if len(groups) == 0:
        return np.zeros(0, dtype=np.int64)
    inverse = groups.inverse if rows is None else groups.inverse[rows]
    pairs = mix64(inverse, values if rows is None else values[rows])
    order = np.argsort(pairs)  # one row per distinct (group, value): any row of it names the group
    s = pairs[order]
    first = np.empty(len(s), dtype=bool)
    first[:1] = True
    np.not_equal(s[1:], s[:-1], out=first[1:])
    return np.bincount(inverse[order[first]], minlength=len(groups))


def source_features(frame: FlowFrame, rows: np.ndarray | None = None) -> tuple[Groups, dict[str, np.ndarray]]:
    """Per (institution, source host): flows, distinct dst hosts/ports/services, failed, bytes, packets."""
    sel = slice(None) if rows is None else rows
    g = group(frame.src_key[sel])
    c = frame.cols
    feats = {
        "flows": g.count,
        "distinct_dsts": distinct_per_group(g, frame.dst_h[sel]),
        "distinct_ports": distinct_per_group(g, c["dst_port"][sel]),
        "distinct_services": distinct_per_group(g, frame.dst_service[sel]),
        "failed": np.bincount(g.inverse, weights=frame.failed[sel], minlength=len(g)).astype(np.int64),
        "syn_only": np.bincount(g.inverse, weights=frame.syn_only[sel], minlength=len(g)).astype(np.int64),
        "bytes": g.sum(frame.bytes[sel]),
        "packets": g.sum(frame.packets[sel]),
    }
    return g, feats


def service_features(frame: FlowFrame, rows: np.ndarray | None = None) -> tuple[Groups, dict[str, np.ndarray]]:
    """Per (institution, destination host, protocol, port): flows, SYN-only flows, distinct sources."""
    sel = slice(None) if rows is None else rows
    g = group(frame.service_key[sel])
    return g, {
        "flows": g.count,
        "syn_only": np.bincount(g.inverse, weights=frame.syn_only[sel], minlength=len(g)).astype(np.int64),
        "distinct_srcs": distinct_per_group(g, frame.src_h[sel]),
        "bytes": g.sum(frame.bytes[sel]),
    }


def pair_features(frame: FlowFrame, rows: np.ndarray | None = None) -> tuple[Groups, dict[str, np.ndarray]]:
    """Per (institution, src, dst, dst port): flows and the sums that give byte mean/variance and duration."""
    sel = slice(None) if rows is None else rows
    g = group(mix64(frame.src_key[sel], frame.dst_service[sel]))
    b = frame.cols["src2dst_bytes"][sel].astype(np.float64)
    return g, {
        "flows": g.count,
        "bytes_sum": g.sum(b),
        "bytes_sumsq": g.sum(b * b),
        "duration_ms_sum": g.sum((frame.end_ms[sel] - frame.t_ms[sel]).astype(np.float64)),
    }


class DampedStats:
    """Kitsune-style damped statistics per key: decayed flow count and byte mean/std per time scale.

    >>> d = DampedStats(half_lives_ms=(1_000,))
    >>> d.update(np.array([7], np.uint64), np.array([0]), np.array([1.0]), np.array([100.0]), np.array([1e4]))
    array([[  1., 100.,   0.]])
    >>> d.update(np.array([7], np.uint64), np.array([1_000]), np.array([1.0]), np.array([300.0]), np.array([9e4]))[0, 0].item()
    1.5
    """

    def __init__(self, half_lives_ms: tuple[int, ...] = (1_000, 10_000, 60_000), max_keys: int = 200_000) -> None:
        self.half_lives_ms = tuple(half_lives_ms)
        self.max_keys = max_keys
        cols = ["t_ms"] + [f"{s}{i}" for i in range(len(half_lives_ms)) for s in ("w", "ls", "ss")]
        self.table = KeyedTable(tuple(cols))

    @property
    def width(self) -> int:
        return 3 * len(self.half_lives_ms)

    def update(self, keys: np.ndarray, t_ms: np.ndarray, count: np.ndarray, bytes_sum: np.ndarray,
               bytes_sumsq: np.ndarray) -> np.ndarray:
        """Add per-key aggregates seen at ``t_ms``; return (k, 3 per scale) of count, mean, std."""
        pos = self.table.upsert(keys, t_ms=float(np.min(t_ms)) if len(t_ms) else 0.0)
        cols = self.table.cols
        t = np.maximum(np.asarray(t_ms, dtype=np.float64), cols["t_ms"][pos])
        dt = t - cols["t_ms"][pos]
        out = np.empty((len(keys), self.width))
        for i, half in enumerate(self.half_lives_ms):
            decay = np.exp2(-dt / half)
            w = cols[f"w{i}"][pos] * decay + count
            ls = cols[f"ls{i}"][pos] * decay + bytes_sum
            ss = cols[f"ss{i}"][pos] * decay + bytes_sumsq
            cols[f"w{i}"][pos], cols[f"ls{i}"][pos], cols[f"ss{i}"][pos] = w, ls, ss
            mean = ls / np.maximum(w, 1e-12)
            out[:, 3 * i] = w
            out[:, 3 * i + 1] = mean
            out[:, 3 * i + 2] = np.sqrt(np.maximum(ss / np.maximum(w, 1e-12) - mean * mean, 0.0))
        cols["t_ms"][pos] = t
        if len(self.table) > self.max_keys:
            self._evict()
        return out

    def _evict(self) -> None:
        """Drop the least active half of the keys (smallest weight at the longest scale, decayed)."""
        cols = self.table.cols
        last = len(self.half_lives_ms) - 1
        now = cols["t_ms"].max()
        weight = cols[f"w{last}"] * np.exp2(-(now - cols["t_ms"]) / self.half_lives_ms[last])
        cut = np.partition(weight, len(weight) // 2)[len(weight) // 2]
        self.table.keep(weight > cut)
