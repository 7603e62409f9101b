"""Amplification and TCP reflection floods are found within seconds; solicited answers are not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from finsa.detectors.floods.reflection import ReflectionDetector

T0 = 1_750_000_000_000


def run(detector, batches):
    return [a for b in batches for a in detector.process(b)]



@pytest.mark.parametrize("port, size", [(123, 468), (161, 1400), (53, 3000), (4500, 232), (11211, 1400)])
def test_amplification_is_alerted_within_two_seconds(synth, port, size) -> None:
    attack = synth.amplification("10.1.100.22", 3_000, T0 + 60_000, port=port, size=size, duration_ms=10_000)
    batches = synth.per_second(synth.benign(6_000, duration_ms=120_000), attack)
    alerts = run(ReflectionDetector(), batches)
    assert alerts and {(a["entity"], a["technique"]) for a in alerts} == {("10.1.100.22", "T1498.002")}
    assert alerts[0]["time_ms"] - (T0 + 60_000) <= 2_000
    features = json.loads(alerts[0]["evidence"])["features"]
    assert features["service_ports"] == [port] and features["reflectors_in_bin"] >= 20
    assert features["request_bytes"] == 0 and features["top_reflectors"]


def test_tcp_syn_ack_reflection_at_a_low_rate_is_alerted(synth) -> None:
    """Two reflectors answering spoofed SYNs: one bare SYN-ACK every 6 s each, for five minutes."""
    n = 100
    cols = synth.stealth_scan(["93.114.150.139", "75.136.225.254"] * (n // 2), [21] * n, T0, flags=18,
                              attacker="10.10.10.10", duration_ms=300_000)
    cols.update(src_ip=cols["dst_ip"], dst_ip=["10.10.10.10"] * n, src_port=[21] * n,
                dst2src_packets=[0] * n, dst2src_bytes=[0] * n, dst2src_tcp_flags=[0] * n)
    alerts = run(ReflectionDetector(), synth.batches(cols, batch_rows=5))
    assert alerts and alerts[0]["entity"] == "10.10.10.10"
    assert json.loads(alerts[0]["evidence"])["features"]["kind"] == "tcp"


def test_answers_to_multicast_discovery_are_solicited(synth) -> None:
    """An SSDP M-SEARCH and an mDNS query draw unicast answers from 400 devices each."""
    asks = synth.udp_scan(["239.255.255.250", "224.0.0.251"], [1900, 5353], T0, attacker="10.1.1.50",
                          duration_ms=10)
    asks["src_port"] = np.array([50000, 5353])
    answers = []
    for port, client_port in ((1900, 50000), (5353, 5353)):
        cols = synth.amplification("10.1.1.50", 400, T0 + 50, port=port, size=400, duration_ms=1_000)
        cols["dst_port"] = np.full(400, client_port)
        answers.append(cols)
    assert run(ReflectionDetector(), synth.per_second(asks, *answers)) == []


def test_answered_exchanges_and_busy_resolvers_are_not_reflection(synth) -> None:
    """A resolver answering 5,000 clients a second, NTP clients syncing: every flow has both directions."""
    n = 10_000
    cols = synth.udp_scan([f"10.1.{i // 250}.{i % 250 + 1}" for i in range(n)], [53] * n, T0,
                          attacker="10.1.100.3", duration_ms=2_000)
    cols.update(src_ip=cols["dst_ip"], dst_ip=["10.1.100.3"] * n, src_port=np.full(n, 40000),
                dst2src_packets=np.ones(n, int), dst2src_bytes=np.full(n, 1400))
    assert run(ReflectionDetector(), synth.per_second(cols, synth.benign(5_000, duration_ms=60_000))) == []


def test_benign_background_raises_nothing(synth) -> None:
    batches = synth.batches(synth.benign(30_000, duration_ms=600_000, n_clients=300), batch_rows=1_000)
    assert run(ReflectionDetector(), batches) == []
