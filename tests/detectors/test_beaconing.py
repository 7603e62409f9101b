"""Steady call-home traffic is beaconing; random, inbound, NTP and split long flows are not."""

from __future__ import annotations

import json

import numpy as np

from finsa.detectors.beaconing import BeaconingDetector


def run(detector, batches):
    return [a for b in batches for a in detector.process(b)]


def test_jittered_beacon_amid_benign_is_alerted(synth) -> None:
    t0 = synth.T0_MS
    batches = synth.batches(synth.benign_hinted(30_000, duration_ms=900_000),
                            synth.beacon("10.1.1.79", "192.0.2.66", 25, t0 + 5_000, interval_ms=30_000, jitter=0.2),
                            batch_rows=1_000)
    alerts = run(BeaconingDetector(), batches)
    assert [(a["entity"], a["entity_kind"], a["target"], a["technique"]) for a in alerts] == [
        ("10.1.1.79", "src_ip", "192.0.2.66:443", "T1071")]
    feats = json.loads(alerts[0]["evidence"])["features"]
    assert 25_000 <= feats["median_interval_ms"] <= 35_000 and feats["beats"] >= 8


def test_a_few_missed_beats_are_tolerated(synth) -> None:
    cols = synth.beacon("10.1.1.79", "192.0.2.66", 20, synth.T0_MS, interval_ms=60_000, jitter=0.05)
    keep = np.ones(20, bool)
    keep[[5, 13]] = False
    cols = {k: np.asarray(v)[keep] for k, v in cols.items()}
    assert [a["entity"] for a in run(BeaconingDetector(), synth.batches(cols, batch_rows=3))] == ["10.1.1.79"]


def test_random_arrivals_are_not_beaconing(synth) -> None:
    cols = synth.beacon("10.1.1.79", "192.0.2.66", 30, synth.T0_MS)
    cols["first_seen_ms"] = synth.T0_MS + np.sort(synth.rng.integers(0, 900_000, 30))
    cols["last_seen_ms"] = cols["first_seen_ms"] + 100
    assert run(BeaconingDetector(), synth.batches(cols)) == []


def test_ntp_inbound_and_fast_polling_are_not_beaconing(synth) -> None:
    t0 = synth.T0_MS
    ntp = synth.beacon("10.1.1.79", "192.0.2.123", 20, t0, interval_ms=64_000, jitter=0.0, port=123)
    inbound = synth.beacon("198.51.100.9", "10.1.100.80", 20, t0, interval_ms=30_000)
    fast = synth.beacon("10.1.1.80", "192.0.2.70", 60, t0, interval_ms=2_000)
    assert run(BeaconingDetector(), synth.batches(ntp, inbound, fast)) == []


def test_records_of_one_long_connection_are_not_beats(synth) -> None:
    cols = synth.beacon("10.1.1.79", "192.0.2.66", 20, synth.T0_MS, interval_ms=120_000, jitter=0.0)
    cols["src_port"] = np.full(20, 50_123)  # active-timeout records of the same TCP connection
    assert run(BeaconingDetector(), synth.batches(cols)) == []


def test_state_is_bounded(synth) -> None:
    detector = BeaconingDetector(max_pairs=50)
    parts = [synth.beacon(f"10.1.2.{i}", "192.0.2.66", 2, synth.T0_MS + i * 10, interval_ms=5_000) for i in range(200)]
    run(detector, synth.batches(*parts, batch_rows=40))
    assert len(detector._state["keys"]) <= 50


def test_benign_traffic_gives_no_alert(synth) -> None:
    batches = synth.batches(synth.benign_hinted(40_000, duration_ms=1_800_000, n_clients=200),
                            synth.benign(20_000, duration_ms=1_800_000, n_clients=100), batch_rows=1_000)
    assert run(BeaconingDetector(), batches) == []


def test_multicast_broadcast_and_link_local_are_never_beacons(synth) -> None:
    """SSDP to 239.255.255.250:1900, mDNS to 224.0.0.251, NetBIOS to a subnet broadcast, LLMNR to
    a link-local peer, every 30 s from an internal host: chatter, not command and control."""
    parts = [synth.beacon("10.1.1.79", dst, 20, synth.T0_MS, interval_ms=30_000, port=port)
             for dst, port in (("239.255.255.250", 1900), ("224.0.0.251", 5353), ("10.1.1.255", 137),
                               ("169.254.10.20", 5355))]
    for p in parts:
        p["protocol"] = np.full(20, 17)
    assert run(BeaconingDetector(outbound_only=False), synth.batches(*parts)) == []


def test_a_rat_redialling_is_a_reconnect_but_a_monitoring_poller_is_not(synth) -> None:
    from finsa.detectors.beaconing import ReconnectDetector
    rat = synth.beacon("172.16.0.114", "172.16.0.111", 7, synth.T0_MS, interval_ms=10_000, jitter=0.02, port=4433)
    rat["src2dst_bytes"] = np.array([180, 88_000, 91_000, 540, 88_500, 90_000, 178])  # commands in some sessions
    alerts = run(ReconnectDetector(), synth.batches(rat))
    assert [(a["entity"], a["target"], a["technique"]) for a in alerts] == [("172.16.0.114", "172.16.0.111:4433", "T1571")]
    polls = [synth.beacon("10.1.0.30", f"10.1.0.{20 + i}", 12, synth.T0_MS + 700 * i, interval_ms=15_000, port=9200)
             for i in range(4)]
    assert run(ReconnectDetector(), synth.batches(*polls)) == []
    few = synth.beacon("10.1.0.31", "10.1.0.40", 4, synth.T0_MS, interval_ms=10_000, port=4433)
    assert run(ReconnectDetector(), synth.batches(few)) == []


def test_reflected_syn_acks_at_a_rhythm_are_not_reconnects(synth) -> None:
    """Spoofed-source reflection: SYN-ACKs (or bare SYNs) every 10 s, no connection ever made."""
    from finsa.detectors.beaconing import ReconnectDetector
    syns = synth.beacon("10.10.10.10", "198.51.100.5", 10, synth.T0_MS, interval_ms=10_000, jitter=0.01, port=9069)
    syns.update(src2dst_tcp_flags=np.full(10, 2), dst2src_packets=np.zeros(10, int), dst2src_tcp_flags=np.zeros(10, int))
    synacks = synth.beacon("136.243.174.154", "10.10.10.10", 10, synth.T0_MS, interval_ms=10_000, jitter=0.01, port=9070)
    synacks.update(src2dst_tcp_flags=np.full(10, 18), dst2src_packets=np.zeros(10, int))
    assert run(ReconnectDetector(), synth.batches(syns, synacks)) == []
