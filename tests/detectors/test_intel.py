"""Flows touching fed indicators are alerted; feeds replace themselves; bad entries are counted."""

from __future__ import annotations

import json
import pickle

from finsa.detectors.intel import REJECTED, IntelDetector
from finsa.wire import FLOW


def run(detector, batches):
    return [a for b in batches for a in detector.process(b)]


def flows(**cols):
    n = len(cols["dst_ip"])
    base = {"src_ip": ["10.1.0.5"] * n, "dst_port": [443] * n, "protocol": [6] * n, "dst2src_packets": [3] * n,
            "first_seen_ms": [1_000 + i for i in range(n)], "last_seen_ms": [1_500 + i for i in range(n)],
            "flow_id": list(range(1, n + 1)), "institution_id": ["bank-a"] * n}
    return FLOW.make_batch({**base, **cols})


def test_address_cidr_domain_and_ja4_matches() -> None:
    d = IntelDetector()
    d.set_indicators(addresses=["192.0.2.0/24", "2001:db8::66"], source="f1", technique="T1071.001")
    d.set_indicators(domains=["*.evil.example"], ja4=["t13d1516h2_8daaf6152771_b186095e22b6"], source="f2")
    b = flows(src_ip=["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5"],
              dst_ip=["192.0.2.9", "2001:db8::66", "198.51.100.1", "198.51.100.2", "198.51.100.3"],
              tls_sni=["", "", "a.b.EVIL.example", "notevil.example", ""],
              tls_ja4=["", "", "", "", "t13d1516h2_8daaf6152771_b186095e22b6"])
    alerts = d.process(b)
    assert sorted((a["entity"], a["target"]) for a in alerts) == [
        ("10.1.0.1", "192.0.2.0/24"), ("10.1.0.2", "2001:db8::66"), ("10.1.0.3", "evil.example"),
        ("10.1.0.5", "t13d1516h2_8daaf6152771_b186095e22b6")]
    first = next(a for a in alerts if a["entity"] == "10.1.0.1")
    feats = json.loads(first["evidence"])["features"]
    assert feats["feed"] == "f1" and feats["indicator_technique"] == "T1071.001" and first["technique"] == "T1071"


def test_inbound_from_a_listed_address_names_it() -> None:
    d = IntelDetector(addresses=("203.0.113.9",))
    alerts = d.process(flows(src_ip=["203.0.113.9"], dst_ip=["10.1.0.80"], dst2src_packets=[0]))
    assert [(a["entity"], a["severity"]) for a in alerts] == [("203.0.113.9", 3)]
    assert json.loads(alerts[0]["evidence"])["features"]["matched_in"] == "src_address"


def test_a_feed_replaces_its_own_list_only() -> None:
    d = IntelDetector()
    d.set_indicators(addresses=["192.0.2.1"], source="a")
    d.set_indicators(addresses=["192.0.2.2"], source="b")
    d.set_indicators(addresses=["192.0.2.3"], source="a")
    b = flows(src_ip=["10.0.0.1", "10.0.0.2", "10.0.0.3"], dst_ip=["192.0.2.1", "192.0.2.2", "192.0.2.3"])
    assert [a["target"] for a in d.process(b)] == ["192.0.2.2", "192.0.2.3"]


def test_bad_entries_are_counted_and_skipped() -> None:
    before = REJECTED.value(detector="intel")
    kept = IntelDetector().set_indicators(addresses=["192.0.2.1", "nonsense"], domains=["ok.example", "a b"])
    assert kept == {"addresses": 1, "domains": 1, "ja4": 0, "rejected": 2}
    assert REJECTED.value(detector="intel") == before + 2


def test_indicators_survive_pickling_and_clone_is_empty() -> None:
    d = IntelDetector()
    d.set_indicators(domains=["evil.example"])
    b = flows(dst_ip=["198.51.100.1"], dns_query=["x.evil.example"])
    assert len(pickle.loads(pickle.dumps(d)).process(b)) == 1
    assert d.clone().process(b) == []


def test_benign_traffic_with_unrelated_indicators_gives_no_alert(synth) -> None:
    d = IntelDetector(addresses=("192.0.2.200", "203.0.113.0/25"), domains=("evil.example", "example.org"))
    batches = synth.batches(synth.benign_hinted(40_000, duration_ms=600_000), synth.benign(20_000), batch_rows=1_000)
    assert run(d, batches) == []
