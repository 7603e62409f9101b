"""Stealth, UDP, IP-protocol and slow scans are found; polls, multicast, P2P and split TLS are not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from finsa.detectors.probescan import ProbeScanDetector

T0 = 1_750_000_000_000


def run(detector, batches):
    return [a for b in batches for a in detector.process(b)]


@pytest.mark.parametrize("flags", [0, 1, 41, 16, 17])  # NULL, FIN, Xmas, ACK, Maimon
def test_stealth_tcp_scans_are_alerted(synth, flags) -> None:
    batches = synth.batches(synth.benign(5_000, duration_ms=120_000),
                            synth.stealth_scan("10.1.100.20", range(1, 301), T0 + 30_000, flags=flags), batch_rows=400)
    alerts = run(ProbeScanDetector(), batches)
    assert [(a["entity"], a["target"], a["technique"]) for a in alerts] == [("203.0.113.67", "10.1.100.20", "T1046")]
    features = json.loads(alerts[0]["evidence"])["features"]
    assert features["kinds"] == ["tcp_stealth"] and features["max_ports_one_host"] >= 20


def test_udp_scan_is_alerted_with_its_icmp_answers_ignored(synth) -> None:
    scan = synth.udp_scan("10.1.100.21", range(1, 1001), T0)
    unreachable = synth.stealth_scan("203.0.113.68", [3], T0 + 100)  # shape only: rewritten below as ICMP
    unreachable.update(protocol=[1], src_ip=["10.1.100.21"], src_port=[3], dst_port=[3], src2dst_packets=[990])
    alerts = run(ProbeScanDetector(), synth.batches(scan, unreachable, batch_rows=200))
    assert [(a["entity"], a["target"]) for a in alerts] == [("203.0.113.68", "10.1.100.21")]


def test_ip_protocol_scan_is_alerted(synth) -> None:
    cols = synth.udp_scan("10.1.100.25", [0] * 250, T0, attacker="203.0.113.69")
    cols["protocol"] = np.array([p for p in range(256) if p not in (1, 6, 17, 58, 4, 41)][:250])
    alerts = run(ProbeScanDetector(), synth.batches(cols))
    assert len(alerts) == 1 and json.loads(alerts[0]["evidence"])["features"]["max_protocols_one_host"] >= 8


def test_slow_vertical_scan_over_an_hour_is_alerted(synth) -> None:
    """One SYN every 30 s to a new port: two per minute, far under any one-minute threshold."""
    scan = synth.scan("10.1.100.30", range(1, 121), T0 + 60_000, duration_ms=3_600_000, open_ports=())
    batches = synth.batches(synth.benign(20_000, duration_ms=3_700_000, n_clients=200), scan, batch_rows=500)
    alerts = run(ProbeScanDetector(), batches)
    assert alerts and {a["entity"] for a in alerts} == {synth.ATTACKER}
    first = json.loads(alerts[0]["evidence"])["features"]
    assert first["slow_failed_ports_one_host"] >= 30 and alerts[0]["time_ms"] < T0 + 60_000 + 1_800_000


def test_monitoring_poller_with_some_devices_down_is_not_a_scan(synth) -> None:
    """SNMP polls to 300 devices every minute for 30 min; 25 of them never answer."""
    rows = []
    for minute in range(30):
        cols = synth.udp_scan([f"10.5.{i // 250}.{i % 250 + 1}" for i in range(300)], [161] * 300,
                              T0 + minute * 60_000, attacker="10.1.9.9", duration_ms=20_000)
        answered = np.arange(300) >= 25
        cols.update(dst2src_packets=answered.astype(int), dst2src_bytes=answered * 180, src_port=[40161] * 300)
        rows.append(cols)
    assert run(ProbeScanDetector(), synth.batches(*rows, batch_rows=500)) == []


def test_multicast_p2p_split_tls_and_dns_answers_are_not_probes(synth) -> None:
    n = 400
    mdns = synth.udp_scan(["224.0.0.251", "239.255.255.250", "255.255.255.255", "ff02::fb"] * 100,
                          [5353, 1900, 137, 5353] * 100, T0, attacker="10.1.1.40", duration_ms=60_000)
    rng = np.random.default_rng(4)
    p2p = synth.udp_scan([f"198.51.{i % 50}.{i % 200 + 1}" for i in range(n)], rng.integers(1024, 65535, n),
                         T0, attacker="10.1.1.41", duration_ms=600_000)
    p2p["dst2src_packets"] = (rng.random(n) < 0.4).astype(int)  # 60 % of peers gone: still one port each
    tls = synth.stealth_scan([f"198.51.100.{i % 40}" for i in range(n)], [443] * n, T0, flags=24,
                             attacker="10.1.1.42", duration_ms=600_000)
    tls.update(src2dst_packets=[40] * n, dst2src_packets=[60] * n, dst2src_tcp_flags=[24] * n)
    answers = synth.udp_scan(["10.1.1.43"] * n, rng.integers(1024, 65535, n), T0, attacker="10.1.100.3",
                             duration_ms=60_000)
    answers["src_port"] = [53] * n  # a resolver's answers whose queries the tap did not see
    assert run(ProbeScanDetector(), synth.batches(mdns, p2p, tls, answers, batch_rows=300)) == []


def test_benign_background_raises_nothing(synth) -> None:
    batches = synth.batches(synth.benign(30_000, duration_ms=600_000, n_clients=300), batch_rows=1_000)
    assert run(ProbeScanDetector(), batches) == []


def test_rst_backscatter_is_not_a_scan(synth) -> None:
    """RST-ACKs from one server to 200 ephemeral ports of a host whose address was spoofed in a SYN flood."""
    cols = synth.stealth_scan("10.10.10.10", range(49990, 50190), T0, flags=20, attacker="178.32.105.182")
    cols.update(src_port=[5050] * 200, dst2src_packets=[0] * 200, dst2src_tcp_flags=[0] * 200)
    assert run(ProbeScanDetector(), synth.batches(cols)) == []


def test_slow_scan_prefilter_changes_no_alert_and_counts_follow_the_table(synth, monkeypatch) -> None:
    """Slow-scan counting runs only for sources with at least ``slow_min_services`` failed entries;
    every source counted gives the same alerts, and the per-source counts match the table as
    entries expire and overflow."""
    scan = synth.scan("10.1.100.30", range(1, 121), T0 + 60_000, duration_ms=3_600_000, open_ports=(5, 6))
    batches = synth.batches(synth.benign(12_000, duration_ms=3_700_000, n_clients=200), scan, batch_rows=500)
    for kwargs in ({}, {"max_slow_entries": 2_000, "slow_window_ms": 1_200_000}):
        fast = ProbeScanDetector(**kwargs)
        got = run(fast, batches)
        table = fast._slow
        failed = table.cols["failed"] > 0
        expect: dict[int, float] = {}
        for k in table.cols["src"][failed].view(np.uint64).tolist():
            expect[k] = expect.get(k, 0.0) + 1.0
        assert fast._slow_failed.as_dict() == expect
        with monkeypatch.context() as m:
            m.setattr(ProbeScanDetector, "_failed_of", lambda self, src: np.full(len(src), np.inf))
            assert run(ProbeScanDetector(**kwargs), batches) == got
    assert got


def test_sources_with_too_few_probes_are_not_scored_and_nothing_changes(synth, monkeypatch) -> None:
    """Scoring only sources with at least as many buffered probes as the lowest threshold gives
    what scoring every probing source gives; the per-source counts follow the buffer."""
    parts = [synth.benign(8_000, duration_ms=240_000, n_clients=300),
             synth.stealth_scan("10.1.100.20", range(1, 30), T0 + 30_000, flags=1),
             synth.udp_scan("10.1.100.21", range(1, 7), T0 + 100_000, attacker="203.0.113.80"),
             synth.udp_scan([f"10.1.9.{i}" for i in range(1, 6)], [161] * 5, T0 + 150_000, attacker="203.0.113.81")]
    batches = synth.batches(*parts, batch_rows=300)
    for kwargs in ({}, {"min_ports": 5, "min_hosts": 4, "max_buffer_rows": 200}):
        fast = ProbeScanDetector(**kwargs)
        got = run(fast, batches)
        buffered: dict[int, float] = {}
        for k in fast._buf.column("key").tolist():
            buffered[k] = buffered.get(k, 0.0) + 1.0
        assert fast._probes.as_dict() == buffered
        with monkeypatch.context() as m:
            m.setattr(ProbeScanDetector, "_min_probes", lambda self: 0)
            assert run(ProbeScanDetector(**kwargs), batches) == got
    assert len({a["entity"] for a in got}) == 3  # the small scans too, under the low thresholds
