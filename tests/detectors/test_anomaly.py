"""The anomaly detector stays quiet while warming up and flags an injected outlier after it."""

from __future__ import annotations

import numpy as np

from finsa.detectors.anomaly import AnomalyDetector
from finsa.wire import FLOW


def outlier(synth, start_ms: int):
    """One internal host suddenly talking to 300 hosts with big one-sided transfers."""
    n = 600
    rng = np.random.default_rng(0)
    first = start_ms + np.sort(rng.integers(0, 5_000, n))
    return {
        "flow_id": np.arange(10**9, 10**9 + n), "first_seen_ms": first, "last_seen_ms": first + 10,
        "institution_id": ["bank-a"] * n, "protocol": [6] * n, "src_ip": ["10.1.9.9"] * n,
        "dst_ip": [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(n)], "dst_port": rng.integers(1, 65535, n),
        "src_port": rng.integers(1024, 65535, n), "src2dst_packets": [2_000] * n,
        "src2dst_bytes": [2_800_000] * n, "dst2src_packets": [1] * n, "dst2src_bytes": [60] * n,
        "src2dst_tcp_flags": [27] * n, "dst2src_tcp_flags": [16] * n, "ip_version": [4] * n}


def test_outlier_after_warmup_is_alerted(synth) -> None:
    detector = AnomalyDetector(warmup=600, tree_window=100)
    background = synth.batches(synth.benign(40_000, duration_ms=400_000, n_clients=200), batch_rows=1_000)
    quiet = [a for b in background for a in detector.process(b)]
    assert detector._models["bank-a"].learned >= 600
    attack = synth.batches(synth.benign(2_000, synth.T0_MS + 400_000, duration_ms=10_000, n_clients=200),
                           outlier(synth, synth.T0_MS + 401_000), batch_rows=3_000)
    alerts = [a for b in attack for a in detector.process(b)]
    assert [(a["entity"], a["institution_id"], a["technique"]) for a in alerts] == [
        ("10.1.9.9", "bank-a", "anomaly")]
    assert alerts[0]["score"] > 0.8 and alerts[0]["severity"] >= 3
    assert len(quiet) <= 2  # the benign background may raise the odd low alert, not a stream of them


def test_no_alert_during_warmup(synth) -> None:
    detector = AnomalyDetector(warmup=10**6)
    batches = synth.batches(synth.benign(5_000, duration_ms=60_000), outlier(synth, synth.T0_MS + 30_000))
    assert [a for b in batches for a in detector.process(b)] == []


def test_a_flagged_vector_is_not_learned(synth) -> None:
    detector = AnomalyDetector(warmup=300, tree_window=100, max_learned=10**6, min_flows=1)
    for b in synth.batches(synth.benign(20_000, duration_ms=200_000, n_clients=200), batch_rows=1_000):
        detector.process(b)
    learned = detector._models["bank-a"].learned
    alerts = detector.process(FLOW.make_batch(outlier(synth, synth.T0_MS + 201_000)))
    assert len(alerts) == 1 and detector._models["bank-a"].learned == learned
