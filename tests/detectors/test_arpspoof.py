"""The ARP spoofing detector: conflicts, impersonation, the rightful owner, allow-list, state, a real capture."""

from __future__ import annotations

import json
import pickle

from finsa.collectors.meter.arp_bindings import arp_bindings
from finsa.collectors.pcap.capture import read_capture
from finsa.detectors.arpspoof import ArpSpoofDetector
from finsa.wire import ARP, FLOW
from tests.conftest import shared_data

POISONER, GATEWAY, HOST = 0x0025B3BF91EE, 0x00260B310733, 0x002170C056F0


def bindings(*rows: tuple) -> object:
    """ARP rows (time_ms, ip, mac, requests, replies)."""
    return ARP.make_batch({"first_seen_ms": [r[0] for r in rows], "last_seen_ms": [r[0] for r in rows],
                           "institution_id": "bank-a", "ip": [r[1] for r in rows], "mac": [r[2] for r in rows],
                           "requests": [r[3] for r in rows], "replies": [r[4] for r in rows]})


def test_a_mac_answering_for_the_gateway_and_claiming_itself_is_the_poisoner() -> None:
    det = ArpSpoofDetector()
    assert det.process(bindings((1000, "10.0.0.1", GATEWAY, 0, 1), (1000, "10.0.0.7", HOST, 1, 1))) == []
    alerts = det.process(bindings((5000, "10.0.0.66", POISONER, 1, 0), (6000, "10.0.0.1", POISONER, 0, 3)))
    assert [(a["entity"], a["entity_kind"], a["target"], a["severity"]) for a in alerts] == [
        ("10.0.0.66", "src_ip", "10.0.0.1", 4)]
    features = json.loads(alerts[0]["evidence"])["features"]
    assert features["rule"] == "conflict" and features["other_macs"] == ["00:26:0b:31:07:33"]
    # the gateway answering for its own address again is not blamed
    assert det.process(bindings((7000, "10.0.0.1", GATEWAY, 0, 1))) == []


def test_a_flip_flop_blames_the_newcomer_and_alerts_once_per_window() -> None:
    det = ArpSpoofDetector(window_ms=60_000)
    det.process(bindings((1000, "10.0.0.1", GATEWAY, 0, 1)))
    alerts = det.process(bindings((2000, "10.0.0.1", POISONER, 0, 1)))
    assert [(a["entity"], a["entity_kind"]) for a in alerts] == [("00:25:b3:bf:91:ee", "mac")]
    assert det.process(bindings((3000, "10.0.0.1", POISONER, 0, 1))) == []  # same window


def test_requests_alone_and_allowed_macs_raise_nothing() -> None:
    det = ArpSpoofDetector(allowed_macs=["00:25:B3:BF:91:EE"])
    assert det.process(bindings((1000, "10.0.0.1", GATEWAY, 0, 1), (2000, "10.0.0.1", POISONER, 0, 1),
                                (2000, "10.0.0.66", POISONER, 1, 0))) == []
    quiet = ArpSpoofDetector()
    assert quiet.process(bindings((1000, "10.0.0.1", GATEWAY, 1, 0), (2000, "10.0.0.1", POISONER, 1, 0))) == []


def test_claims_expire_after_the_window_and_flows_are_ignored() -> None:
    det = ArpSpoofDetector(window_ms=60_000)
    det.process(bindings((1000, "10.0.0.1", GATEWAY, 0, 1)))
    assert det.process(bindings((200_000, "10.0.0.1", POISONER, 0, 1))) == []  # the old owner expired
    assert det.process(FLOW.make_batch({"dst_port": [22]})) == []


def test_state_pickles_and_replays_the_same_alert_ids() -> None:
    det = ArpSpoofDetector()
    det.process(bindings((1000, "10.0.0.1", GATEWAY, 0, 1)))
    saved = pickle.dumps(det)
    later = bindings((2000, "10.0.0.1", POISONER, 0, 1))
    first = [a["alert_id"] for a in det.process(later)]
    assert first and [a["alert_id"] for a in pickle.loads(saved).process(later)] == first


def test_the_real_poisoning_capture_is_detected_with_the_poisoner_and_the_gateway() -> None:
    capture = shared_data("attacks/chrissanders-packets") / "arp-poisoning.pcapng"
    label = json.loads((capture.parent / "arp-poisoning.label.json").read_text())
    det = ArpSpoofDetector()
    alerts = [a for b in read_capture(capture, 65536) for a in det.process(arp_bindings(b, "lab", "tap"))]
    assert [(a["entity"], a["target"], a["technique"]) for a in alerts] == [("172.16.0.105", "172.16.0.1", "T1557.002")]
    assert "172.16.0.105" in json.dumps(label)


def test_the_engine_runs_arp_detectors_on_arp_batches_only() -> None:
    from finsa.detectors.engine import DetectionEngine

    engine = DetectionEngine()
    engine.process(bindings((1000, "10.0.0.1", GATEWAY, 0, 1)))
    alerts = engine.process(bindings((2000, "10.0.0.1", POISONER, 0, 1), (2000, "10.0.0.66", POISONER, 1, 0)))
    assert alerts.columns["detector"].tolist() == ["arpspoof"] and alerts.columns["entity"].tolist() == ["10.0.0.66"]
    arp = engine.instance_for("arpspoof", "bank-a")
    before = len(arp._claims)
    engine.process(FLOW.make_batch({"institution_id": ["bank-a"], "first_seen_ms": [1_700_000_000_000],
                                    "last_seen_ms": [1_700_000_000_000], "src2dst_packets": [1],
                                    "src_ip": ["10.0.0.1"], "dst_ip": ["10.0.0.2"]}))
    assert len(arp._claims) == before  # flows never reach it


def test_state_is_bounded_by_max_bindings_the_stalest_dropped_first() -> None:
    det = ArpSpoofDetector(max_bindings=100)
    det.process(bindings(*[(1000 + i, f"10.0.{i // 250}.{i % 250}", HOST + i, 1, 0) for i in range(300)]))
    assert len(det._claims) == 100
    kept = {ip for (_, _, ip) in det._claims}
    assert "10.0.1.49" in kept and "10.0.0.0" not in kept  # the latest 100 of 300 addresses stay
