"""State containers: each gives exactly what the plain numpy way it replaces gives."""

from __future__ import annotations

import pickle

import numpy as np

from finsa.detectors.portscan import PortScanDetector
from finsa.detectors.state import KeyedTable, RowBuffer, isin_keys, newest_rows
from finsa.wire import FLOW


def test_isin_keys_is_np_isin() -> None:
    rng = np.random.default_rng(3)
    for i in range(60):
        n, m = int(rng.integers(0, 3000)), int(rng.integers(0, 800))
        ints = rng.integers(0, 2**62, n).astype(np.uint64)
        keys = np.concatenate([rng.choice(ints, min(m, n)) if n else ints[:0],
                               rng.integers(0, 2**62, m).astype(np.uint64)])
        assert (isin_keys(ints, keys) == np.isin(ints, keys)).all()
        floats = rng.choice(np.array([0.0, -0.0, np.nan, np.inf, 1.0, 2.5]), n) if i % 2 else rng.normal(size=n)
        fkeys = np.concatenate([rng.choice(floats, min(m, n)) if n else floats[:0], rng.normal(size=m)])
        assert (isin_keys(floats, fkeys) == np.isin(floats, fkeys)).all()


def _sorted_upsert(keys: np.ndarray, cols: dict, new_keys: np.ndarray, **defaults: float):
    """The former KeyedTable.upsert: concatenate, stable sort, look up."""
    pos = np.searchsorted(keys, new_keys)
    found = (pos < len(keys)) & (keys[np.minimum(pos, max(len(keys) - 1, 0))] == new_keys) if len(keys) else \
        np.zeros(len(new_keys), bool)
    new = np.unique(new_keys[~found])
    merged = np.concatenate([keys, new])
    order = np.argsort(merged, kind="stable")
    cols = {k: np.concatenate([v, np.full(len(new), defaults.get(k, 0.0))])[order] for k, v in cols.items()}
    return merged[order], cols, np.searchsorted(merged[order], new_keys)


def _as_sorted(table: KeyedTable) -> tuple[np.ndarray, dict]:
    order = np.argsort(table.keys)
    return table.keys[order], {k: v[order] for k, v in table.cols.items()}


def test_keyed_table_is_the_sorted_arrays() -> None:
    """Row for row (sorted by key), the hash-indexed table holds what the former sorted arrays
    held, through inserts, repeated keys, removals (small and large), growth and pickling."""
    rng = np.random.default_rng(1)
    table = KeyedTable(("x", "y"))
    keys, cols = table.keys.copy(), {k: v.copy() for k, v in table.cols.items()}
    for i in range(160):
        batch = rng.integers(0, 2**64 - 1, size=int(rng.integers(0, 3000)), dtype=np.uint64, endpoint=True)
        if i % 3 == 0 and len(keys):
            batch = np.concatenate([batch, keys[rng.integers(0, len(keys), 50)]])
        if i % 5 == 0:  # few distinct keys, many repeats
            batch = batch[rng.integers(0, max(len(batch), 1), len(batch))] if len(batch) else batch
        pos = table.upsert(batch, x=np.inf)
        keys, cols, ref = _sorted_upsert(keys, cols, batch, x=np.inf)
        assert (table.keys[pos] == batch).all()
        pos_found, found = table.lookup(np.concatenate([batch, rng.integers(0, 2**63, 20).astype(np.uint64)]))
        assert found[:len(batch)].all() and not found[len(batch):].any() and (pos_found[:len(batch)] == pos).all()
        table.cols["y"][pos] += 1
        cols["y"][ref] += 1
        got_keys, got = _as_sorted(table)
        assert (got_keys == keys).all() and all(np.array_equal(got[k], cols[k]) for k in cols)
        if i % 7 == 0:
            cut = 0.3 if i % 2 else 0.95  # a few rows go (moved into holes), or most (copied)
            mask = rng.random(len(table)) > cut
            gone = table.keys[~mask]
            table.keep(mask)
            keep_ref = ~np.isin(keys, gone)
            keys, cols = keys[keep_ref], {k: v[keep_ref] for k, v in cols.items()}
            assert not table.lookup(gone)[1].any()
        if i % 11 == 0:
            table = pickle.loads(pickle.dumps(table))


def test_keyed_table_pickled_as_sorted_arrays_still_runs() -> None:
    """A table pickled before the hash index (its ``__dict__``: sorted keys and columns)."""
    old = KeyedTable.__new__(KeyedTable)
    old.__dict__.update({"keys": np.array([3, 8], np.uint64), "cols": {"x": np.array([1.0, 2.0])}})
    table = pickle.loads(pickle.dumps(old))
    pos = table.upsert(np.array([8, 5], np.uint64))
    assert table.cols["x"][pos].tolist() == [2.0, 0.0] and len(table) == 3


def test_newest_rows_is_the_stable_sort() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        t = rng.integers(0, int(rng.integers(1, 50)), int(rng.integers(0, 200)))
        limit = int(rng.integers(0, len(t) + 2))
        ref = np.zeros(len(t), bool)
        if limit:
            ref[np.argsort(t, kind="stable")[-limit:]] = True
        assert (newest_rows(t, limit) == ref).all()


def test_row_buffer_is_one_concatenated_buffer() -> None:
    rng = np.random.default_rng(2)
    buf, flat = RowBuffer(), {"t": np.zeros(0, np.int64), "s": np.zeros(0, object)}
    for _ in range(40):
        n = int(rng.integers(0, 30))
        new = {"t": rng.integers(0, 100, n), "s": np.array([str(v) for v in rng.integers(0, 9, n)], dtype=object)}
        buf.append(new)
        flat = {k: np.concatenate([flat[k], new[k]]) for k in flat}
        keep = buf.column("t") >= rng.integers(0, 40)
        buf.keep(keep)
        flat = {k: v[keep] for k, v in flat.items()}
        if rng.random() < 0.5:  # a few rows gone: noted, not copied
            few = rng.random(len(buf)) > 0.1
            buf.keep(few)
            flat = {k: v[few] for k, v in flat.items()}
        pick = rng.random(len(buf)) > 0.5
        got = buf.select(pick)
        assert all(np.array_equal(got[k], flat[k][pick]) for k in flat) and len(buf) == len(flat["t"])
        assert all(np.array_equal(buf.column(k), flat[k]) for k in flat)
        if rng.random() < 0.2:
            buf = pickle.loads(pickle.dumps(buf))
            assert sum(len(c["t"]) for c in buf.chunks) == len(buf)  # a pickle holds the rows left only
    old = RowBuffer.__new__(RowBuffer)  # pickled before rows were noted
    old.__setstate__({"chunks": [{"t": np.array([1, 2])}], "_sizes": [2], "_empty": {"t": np.zeros(0, np.int64)}})
    old.keep(np.array([False, True]))
    assert old.column("t").tolist() == [2]


def test_portscan_state_pickled_as_one_dict_still_runs() -> None:
    """A checkpoint from before the row buffer held the window as one dict of columns."""
    def scan(start_ms: int) -> FLOW:
        return FLOW.make_batch({"src_ip": ["203.0.113.66"] * 15, "dst_ip": ["10.1.0.5"] * 15,
                                "dst_port": list(range(start_ms % 1000, start_ms % 1000 + 15)), "protocol": [6] * 15,
                                "src2dst_tcp_flags": [2] * 15, "src2dst_packets": [1] * 15,
                                "first_seen_ms": [start_ms + i for i in range(15)],
                                "last_seen_ms": [start_ms + i for i in range(15)], "institution_id": ["bank-a"] * 15})

    new, old = PortScanDetector(), PortScanDetector()
    first = scan(1_000)
    assert new.process(first) == old.process(first)
    old._buf = {k: old._buf.column(k) for k in old._buf.chunks[0]}  # as the former code pickled it
    old = pickle.loads(pickle.dumps(old))
    for later in (scan(30_100), scan(61_200)):
        assert new.process(later) == old.process(later)
    assert all(np.array_equal(new._buf.column(k), old._buf.column(k)) for k in new._buf.chunks[0])
    assert len(old._buf) == 30  # the first scan left the 60 s window
