"""ICMP and UDP floods against a victim are found within seconds; backups, CDNs and busy servers are not."""

from __future__ import annotations

import json

import numpy as np

from finsa.detectors.floods.volumetric import VolumetricDetector

T0 = 1_750_000_000_000


def run(detector, batches):
    return [a for b in batches for a in detector.process(b)]



def test_icmp_flood_is_alerted_within_two_seconds(synth) -> None:
    attack = synth.icmp_flood("10.1.100.23", 500, T0 + 60_000, packets_each=30, duration_ms=2_000)
    alerts = run(VolumetricDetector(), synth.per_second(synth.benign(6_000, duration_ms=120_000), attack))
    assert [(a["entity"], a["technique"]) for a in alerts][:1] == [("10.1.100.23", "T1498.001")]
    assert alerts[0]["time_ms"] - (T0 + 60_000) <= 2_000
    features = json.loads(alerts[0]["evidence"])["features"]
    assert features["icmp_share"] == 1.0 and features["sources_in_bin"] >= 20 and features["top_sources"]


def test_single_source_udp_flood_is_alerted(synth) -> None:
    """One host sending 100k pps of unanswered UDP: exported as one long flow, read as a rate."""
    cols = synth.udp_scan("10.1.100.24", [9], T0, attacker="198.51.100.9", duration_ms=1)
    cols.update(src2dst_packets=[6_000_000], src2dst_bytes=[6_000_000 * 512], last_seen_ms=cols["first_seen_ms"] + 60_000)
    alerts = run(VolumetricDetector(), synth.batches(cols))
    assert [a["entity"] for a in alerts] == ["10.1.100.24"]
    assert json.loads(alerts[0]["evidence"])["features"]["packets_per_s"] >= 50_000


def test_backup_cdn_and_answered_traffic_are_not_floods(synth) -> None:
    """A backup (one source, 200k packets/s, acknowledged), a CDN download and NTP service."""
    backup = synth.stealth_scan("10.1.100.40", [873], T0, flags=27, attacker="10.1.3.3", duration_ms=1)
    backup.update(src2dst_packets=[12_000_000], src2dst_bytes=[12_000_000 * 1500], dst2src_packets=[6_000_000],
                  last_seen_ms=backup["first_seen_ms"] + 60_000)
    n = 2_000
    ntp = synth.udp_scan(["10.1.100.123"] * n, [123] * n, T0, attacker="10.1.1.1", duration_ms=1_000)
    ntp.update(src_ip=[f"10.2.{i // 250}.{i % 250 + 1}" for i in range(n)], dst2src_packets=np.ones(n, int))
    cdn = synth.stealth_scan(["10.1.1.9"] * n, [443] * n, T0, flags=27, attacker="151.101.1.1", duration_ms=1_000)
    cdn.update(src_ip=[f"151.101.{i % 4}.{i % 250 + 1}" for i in range(n)], src2dst_packets=np.full(n, 50),
               dst2src_packets=np.full(n, 25))
    assert run(VolumetricDetector(), synth.per_second(backup, ntp, cdn)) == []


def test_a_busy_collector_learns_its_level_and_a_surge_still_alerts(synth) -> None:
    """Syslog from 100 hosts at 3,000 pps for 5 min (one cold-start alert at most), then 10x."""
    n, seconds = 100, 300
    steady = synth.udp_scan(["10.1.100.51"] * (n * seconds), [514] * (n * seconds), T0, attacker="10.1.2.2",
                            duration_ms=1)
    steady.update(src_ip=[f"10.3.0.{i % n + 1}" for i in range(n * seconds)], src2dst_packets=np.full(n * seconds, 30),
                  first_seen_ms=T0 + np.repeat(np.arange(seconds) * 1_000, n) + np.tile(np.arange(n) * 9, seconds))
    steady["last_seen_ms"] = steady["first_seen_ms"]
    detector = VolumetricDetector()
    quiet = run(detector, synth.per_second(steady))
    assert len(quiet) <= 1 and all(a["time_ms"] < T0 + 60_000 for a in quiet)
    surge = synth.udp_scan(["10.1.100.51"] * 3_000, [514] * 3_000, T0 + seconds * 1_000, attacker="10.1.2.2",
                           duration_ms=900)
    surge.update(src_ip=[f"10.4.{i // 250}.{i % 250 + 1}" for i in range(3_000)], src2dst_packets=np.full(3_000, 10))
    assert [a["entity"] for a in run(detector, synth.per_second(surge))] == ["10.1.100.51"]


def test_benign_background_raises_nothing(synth) -> None:
    batches = synth.batches(synth.benign(30_000, duration_ms=600_000, n_clients=300), batch_rows=1_000)
    assert run(VolumetricDetector(), batches) == []


def test_ping_flood_from_one_host_is_alerted_and_monitoring_pings_are_not(synth) -> None:
    """ping -f: 8,000 echo requests a second from one host; a monitor pinging 500 devices once a second."""
    flood = synth.icmp_flood("10.1.100.60", 1, T0, packets_each=8_000, duration_ms=2_000)
    monitor = synth.icmp_flood("10.1.100.61", 500, T0, packets_each=1, duration_ms=2_000)
    monitor.update(src_ip=["10.1.9.9"] * 500, dst_ip=[f"10.6.{i // 250}.{i % 250 + 1}" for i in range(500)])
    alerts = run(VolumetricDetector(), synth.per_second(flood, monitor))
    assert [a["entity"] for a in alerts] == ["10.1.100.60"]
