"""Feature primitives: connection outcomes, per-entity counts, keyed state, damped statistics."""

from __future__ import annotations

import numpy as np

from finsa.detectors.features import (DampedStats, KeyedTable, frame_of, group, mix64, pair_features,
                                      service_features, source_features)
from finsa.wire import FLOW


def batch():
    return FLOW.make_batch({
        "institution_id": ["a", "a", "a", "b", "a"], "protocol": [6, 6, 6, 6, 17],
        "src_ip": ["10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2"],
        "dst_ip": ["10.0.0.9", "10.0.0.9", "10.0.0.8", "10.0.0.9", "10.0.0.9"],
        "dst_port": [22, 23, 22, 22, 53], "src2dst_tcp_flags": [2, 2, 18, 2, 0],
        "dst2src_packets": [0, 1, 5, 2, 1], "dst2src_tcp_flags": [0, 20, 18, 18, 0],
        "src2dst_packets": [1, 1, 5, 1, 1], "src2dst_bytes": [60, 60, 900, 60, 80]})


def test_outcomes() -> None:
    f = frame_of(batch())
    assert f.failed.tolist() == [True, True, False, False, False]  # no answer; RST; ok; SYN-ACK; UDP
    assert f.syn_only.tolist() == [True, True, False, True, False]
    assert frame_of(f.batch) is f


def test_sources_are_per_institution() -> None:
    g, feats = source_features(frame_of(batch()))
    rows = sorted(zip(feats["flows"].tolist(), feats["distinct_ports"].tolist(),
                      feats["distinct_dsts"].tolist(), feats["failed"].tolist()))
    assert rows == [(1, 1, 1, 0), (1, 1, 1, 0), (3, 2, 2, 2)]  # 10.0.0.1 at "b" is its own entity


def test_services_and_pairs() -> None:
    f = frame_of(batch())
    g, feats = service_features(f)
    assert sorted(feats["syn_only"].tolist()) == [0, 0, 1, 1, 1] and len(g) == 5
    g, feats = pair_features(f)
    assert sorted(feats["bytes_sum"].tolist()) == [60, 60, 60, 80, 900]


def test_keyed_table_upsert_and_lookup() -> None:
    t = KeyedTable(("x",))
    t.upsert(np.array([5, 3, 5], np.uint64), x=1.0)
    pos = t.upsert(np.array([5], np.uint64))
    t.cols["x"][pos] += 2
    assert t.keys.tolist() == [3, 5] and t.cols["x"].tolist() == [1.0, 3.0]
    _, found = t.lookup(np.array([3, 4, 9], np.uint64))
    assert found.tolist() == [True, False, False]
    t.keep(t.cols["x"] > 2)  # keys stay sorted and unique
    assert t.keys.tolist() == [5]


def test_damped_stats_decay_with_flow_time() -> None:
    d = DampedStats(half_lives_ms=(1_000, 60_000), max_keys=10)
    key = np.array([1], np.uint64)
    d.update(key, np.array([0]), np.array([4.0]), np.array([400.0]), np.array([40_000.0]))
    out = d.update(key, np.array([2_000]), np.array([0.0]), np.array([0.0]), np.array([0.0]))
    assert out[0, 0] == 1.0  # 4 flows, two half-lives ago
    assert 3.9 < out[0, 3] < 4.0 and out[0, 4] == 100.0
    many = np.arange(100, 130, dtype=np.uint64)
    d.update(many, np.full(30, 3_000), np.ones(30), np.ones(30), np.ones(30))
    assert len(d.table) <= 30


def test_group_counts() -> None:
    g = group(np.array([7, 7, 2], np.uint64))
    assert g.count.tolist() == [1, 2] and g.keys[g.inverse].tolist() == [7, 7, 2]


def test_mix64_is_the_splitmix64_chain() -> None:
    """The in-place mix64 gives the keys the step-by-step formula gives (state keys depend on it)."""
    def finalise(x: np.ndarray) -> np.ndarray:
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))

    rng = np.random.default_rng(4)
    cols = [rng.integers(0, 2**64 - 1, 3000, dtype=np.uint64, endpoint=True), rng.integers(-9, 70_000, 3000),
            rng.random(3000) > 0.5]
    acc = np.zeros(3000, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in cols:
            acc = finalise(acc * np.uint64(0x9E3779B97F4A7C15) + np.asarray(col).astype(np.uint64))
    assert np.array_equal(mix64(*cols), acc)
