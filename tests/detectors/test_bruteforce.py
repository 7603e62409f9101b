"""Login brute force is found; alike polling below the web threshold and varied sessions are not."""

from __future__ import annotations

import numpy as np

from finsa.detectors.bruteforce import BruteForceDetector


def run(detector, batches):
    return [a for b in batches for a in detector.process(b)]


def test_ssh_brute_force_is_alerted(synth) -> None:
    t0 = synth.T0_MS
    batches = synth.batches(synth.benign(10_000, duration_ms=200_000),
                            synth.bruteforce("10.1.100.4", 22, 36, t0 + 20_000, attacker="198.51.100.200"),
                            batch_rows=300)
    alerts = run(BruteForceDetector(), batches)
    # 72 s of attempts straddle two windows: at most one alert in each
    assert {(a["institution_id"], a["entity"], a["entity_kind"], a["target"], a["technique"])
            for a in alerts} == {("bank-a", "198.51.100.200", "src_ip", "10.1.100.4:22", "T1110")}
    windows = [a["time_ms"] // 60_000 for a in alerts]
    assert len(windows) == len(set(windows)) <= 2


def test_rdp_brute_force_across_batches_and_windows(synth) -> None:
    batches = synth.batches(synth.bruteforce("10.1.100.7", 3389, 20, synth.T0_MS + 50_000, spacing_ms=3_000),
                            batch_rows=3)
    alerts = run(BruteForceDetector(), batches)
    # 60 s of attempts straddle two windows: one alert in each at most, the first within 10 attempts
    assert {a["target"] for a in alerts} == {"10.1.100.7:3389"}
    windows = [a["time_ms"] // 60_000 for a in alerts]
    assert len(windows) == len(set(windows)) <= 2
    assert alerts[0]["time_ms"] <= synth.T0_MS + 50_000 + 10 * 3_000 + 1_700


def test_web_polling_below_the_web_threshold_is_not_brute_force(synth) -> None:
    batches = synth.batches(synth.bruteforce("10.1.100.1", 443, 40, synth.T0_MS, spacing_ms=2_000))
    assert run(BruteForceDetector(), batches) == []


def test_varied_sessions_are_not_brute_force(synth) -> None:
    cols = synth.bruteforce("10.1.100.4", 22, 40, synth.T0_MS)
    cols["src2dst_bytes"] = np.random.default_rng(1).integers(500, 50_000, 40)
    assert run(BruteForceDetector(), synth.batches(cols)) == []


def test_benign_traffic_raises_no_brute_force_alert(synth) -> None:
    batches = synth.batches(synth.benign(30_000, duration_ms=300_000, n_clients=300), batch_rows=1_000)
    assert run(BruteForceDetector(), batches) == []
