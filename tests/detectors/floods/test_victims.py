"""The members new to a victim's bin: counted as one table of every bin counted them."""

from __future__ import annotations

import pickle

import numpy as np

from finsa.detectors.features import KeyedTable, mix64
from finsa.detectors.floods.victims import SeenInBins, new_in_bin


def _one_table(seen: KeyedTable, keys, owner, bins, member, max_entries: int) -> np.ndarray:
    """The former new_in_bin: one KeyedTable of (key, bin, member) hashes with a bin column."""
    key = mix64(keys[owner], bins[owner].astype(np.int64), member)
    uniq, first = np.unique(key, return_index=True)
    _, found = seen.lookup(uniq)
    fresh = uniq[~found]
    rows = seen.upsert(fresh)
    seen.cols["bin"][rows] = bins[owner[first[~found]]]
    if len(seen) > max_entries:
        seen.keep(seen.cols["bin"] >= np.max(seen.cols["bin"]) - 1)
    return np.bincount(owner[first[~found]], minlength=len(keys)).astype(np.float64)


def test_new_members_per_bin_as_one_table_counts_them() -> None:
    rng = np.random.default_rng(5)
    sets, table = SeenInBins(), KeyedTable(("bin",))
    for step in range(200):
        n_groups = int(rng.integers(1, 20))
        keys = rng.integers(0, 2**63, n_groups).astype(np.uint64)[rng.integers(0, 5, n_groups) % n_groups]
        keys = np.unique(keys)
        rows = int(rng.integers(1, 300))
        owner = rng.integers(0, len(keys), rows)
        bins = (step // 7 + rng.integers(0, 2, len(keys))).astype(np.float64)  # bins advance, two at once
        member = rng.integers(0, 40, rows).astype(np.uint64)
        got = new_in_bin(sets, keys, owner, bins, member, 500)
        assert np.array_equal(got, _one_table(table, keys, owner, bins, member, 500))
        assert len(sets) == len(table)
        if step % 50 == 0:
            sets = pickle.loads(pickle.dumps(sets))
    assert len(sets.bins) <= 3  # old bins were forgotten


def test_a_table_pickled_before_the_sets_is_taken_over() -> None:
    table = KeyedTable(("bin",))
    rows = table.upsert(np.array([11, 12], np.uint64))
    table.cols["bin"][rows] = [3.0, 4.0]
    sets = SeenInBins.of(table)
    assert sets.found(np.array([11, 12, 11], np.uint64), np.array([3.0, 4.0, 4.0])).tolist() == [True, True, False]
    assert SeenInBins.of(sets) is sets
