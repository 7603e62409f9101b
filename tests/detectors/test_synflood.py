"""SYN floods against a service are found, with the source as entity when one dominates."""

from __future__ import annotations

import numpy as np

from finsa.detectors.synflood import SynFloodDetector


def run(detector, batches):
    return [a for b in batches for a in detector.process(b)]


def test_spoofed_flood_names_the_victim(synth) -> None:
    t0 = synth.T0_MS
    batches = synth.batches(synth.benign(10_000, duration_ms=120_000),
                            synth.synflood("10.1.100.0", 443, 4_000, t0 + 30_000), batch_rows=500)
    alerts = run(SynFloodDetector(), batches)
    assert [(a["institution_id"], a["entity"], a["entity_kind"], a["target"], a["technique"])
            for a in alerts] == [("bank-a", "10.1.100.0", "dst_ip", "10.1.100.0:443", "T1499.001")]
    assert alerts[0]["severity"] >= 4


def test_flood_from_one_source_names_the_source(synth) -> None:
    batches = synth.batches(synth.synflood("10.1.100.2", 80, 2_000, synth.T0_MS, sources=["203.0.113.66"]),
                            batch_rows=300)
    alerts = run(SynFloodDetector(), batches)
    assert [(a["entity"], a["entity_kind"], a["target"]) for a in alerts] == [
        ("203.0.113.66", "src_ip", "10.1.100.2:80")]


def test_learned_baseline_raises_the_threshold(synth) -> None:
    """A service that always sees 40-120 SYN-only flows per bin: 150 is normal, 1500 is not."""
    t0, bin_ms = synth.T0_MS, 10_000
    parts = [synth.synflood("10.1.100.9", 25, int(n), t0 + i * bin_ms, duration_ms=bin_ms - 100)
             for i, n in enumerate(np.tile([40, 120], 15))]
    detector = SynFloodDetector(min_syn_flows=30, bin_ms=bin_ms)
    early = run(detector, synth.batches(*parts, batch_rows=200))
    assert early  # before a baseline exists the absolute minimum decides
    t1 = t0 + 31 * bin_ms
    normal = run(detector, synth.batches(synth.synflood("10.1.100.9", 25, 150, t1, duration_ms=9_000)))
    flood = run(detector, synth.batches(synth.synflood("10.1.100.9", 25, 1_500, t1 + 2 * bin_ms,
                                                       duration_ms=9_000)))
    assert normal == [] and len(flood) == 1


def test_benign_traffic_raises_no_flood_alert(synth) -> None:
    batches = synth.batches(synth.benign(30_000, duration_ms=300_000, n_clients=500), batch_rows=1_000)
    assert run(SynFloodDetector(), batches) == []
