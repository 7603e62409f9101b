"""Bulk uploads over a host's baseline, ICMP and DNS covert channels are exfiltration."""

from __future__ import annotations

import json

import pytest

from finsa.detectors.base import DetectorParamError
from finsa.detectors.exfiltration import ExfiltrationDetector


def run(detector, batches):
    return [a for b in batches for a in detector.process(b)]


def channel(alert) -> str:
    return json.loads(alert["evidence"])["features"]["channel"]


def test_bulk_upload_amid_benign_is_alerted(synth) -> None:
    t0 = synth.T0_MS
    batches = synth.batches(synth.benign_hinted(20_000, duration_ms=600_000),
                            synth.exfil("10.1.1.80", "203.0.113.201", 400_000_000, t0 + 320_000), batch_rows=500)
    alerts = run(ExfiltrationDetector(), batches)
    assert [(a["entity"], a["target"], a["technique"], channel(a)) for a in alerts] == [
        ("10.1.1.80", "203.0.113.201", "T1048", "bulk")]


def test_a_host_that_always_uploads_a_lot_is_its_own_baseline(synth) -> None:
    t0 = synth.T0_MS
    parts = [synth.exfil("10.1.1.90", "203.0.113.5", 150_000_000, t0 + i * 300_000, duration_ms=250_000)
             for i in range(12)]
    alerts = run(ExfiltrationDetector(), synth.batches(*parts, batch_rows=30))
    assert len(alerts) <= 1  # the first bin is over the floor; then the baseline has learned it
    burst = synth.exfil("10.1.1.90", "203.0.113.5", 2_000_000_000, t0 + 12 * 300_000)
    detector = ExfiltrationDetector()
    run(detector, synth.batches(*parts, batch_rows=30))
    assert [a["entity"] for a in run(detector, synth.batches(burst))] == ["10.1.1.90"]


def test_icmp_tunnel_is_alerted_and_ping_is_not(synth) -> None:
    t0 = synth.T0_MS
    tunnel = synth.icmp_tunnel("10.1.1.81", "203.0.113.7", 60, t0)
    ping = synth.icmp_tunnel("10.1.1.82", "203.0.113.8", 200, t0)
    ping["src2dst_bytes"] = ping["src2dst_packets"] * 84
    alerts = run(ExfiltrationDetector(), synth.batches(tunnel, ping))
    assert [(a["entity"], channel(a)) for a in alerts] == [("10.1.1.81", "icmp")]


def test_dns_volume_is_alerted(synth) -> None:
    cols = synth.dns_tunnel("10.1.1.83", 2_000, synth.T0_MS, spacing_ms=100)
    cols["src2dst_bytes"][:] = 1_200
    alerts = run(ExfiltrationDetector(), synth.batches(cols))
    assert [(a["entity"], channel(a)) for a in alerts] == [("10.1.1.83", "dns")]


def test_internal_networks_decide_what_is_outbound(synth) -> None:
    cols = synth.exfil("10.1.1.80", "203.0.113.201", 400_000_000, synth.T0_MS)
    assert run(ExfiltrationDetector(internal_networks=("10.0.0.0/8", "203.0.113.0/24")), synth.batches(cols)) == []
    with pytest.raises(DetectorParamError):
        ExfiltrationDetector(internal_networks=("not-a-network",))


def test_benign_traffic_gives_no_alert(synth) -> None:
    batches = synth.batches(synth.benign_hinted(40_000, duration_ms=900_000, n_clients=300),
                            synth.benign(20_000, duration_ms=900_000), batch_rows=1_000)
    assert run(ExfiltrationDetector(), batches) == []


def test_a_burst_across_a_bin_boundary_is_counted_whole(synth) -> None:
    # 150 MB in one minute that straddles a 5-minute boundary: ~75 MB in each bin, each half
    # under the 100 MB floor, the whole over it: the sliding total alerts, once
    boundary = (synth.T0_MS // 300_000 + 2) * 300_000
    burst = synth.exfil("10.1.1.84", "203.0.113.9", 150_000_000, boundary - 30_000, n=60)
    alerts = run(ExfiltrationDetector(), synth.batches(burst, batch_rows=5))
    assert [(a["entity"], channel(a)) for a in alerts] == [("10.1.1.84", "bulk")]
    features = json.loads(alerts[0]["evidence"])["features"]
    assert features["bytes_in_bin"] < 100_000_000 <= features["bytes_in_window"]


def test_the_bin_before_counts_only_while_inside_the_window(synth) -> None:
    # 80 MB early in one bin, 80 MB late in the next: the first burst has left the window
    start = (synth.T0_MS // 300_000 + 2) * 300_000
    early = synth.exfil("10.1.1.85", "203.0.113.9", 80_000_000, start + 10_000, duration_ms=20_000)
    late = synth.exfil("10.1.1.85", "203.0.113.9", 80_000_000, start + 300_000 + 250_000, duration_ms=20_000)
    assert run(ExfiltrationDetector(), synth.batches(early, late, batch_rows=5)) == []
