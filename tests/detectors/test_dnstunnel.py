"""DNS tunnels and DGA bots are found; ordinary name resolution is not."""

from __future__ import annotations

import json

import pytest

from finsa.detectors.dnsnames import dga_score, registered_domain
from finsa.detectors.dnstunnel import DgaDetector, DnsTunnelDetector
from finsa.wire import ALERT
from tests.conftest import shared_data


def run(detector, batches):
    return [a for b in batches for a in detector.process(b)]


def test_dnscat_capture_is_alerted() -> None:
    from finsa.collectors.meter.flowmeter import meter_capture
    path = shared_data("flows/nfstream") / "dns_exfiltration.pcap"
    alerts = run(DnsTunnelDetector(), meter_capture(path, profile="agent", institution_id="bank-a"))
    assert [(a["entity"], a["technique"]) for a in alerts] == [("192.168.220.56", "T1071.004")]
    features = json.loads(alerts[0]["evidence"])["features"]
    assert features["queries"] >= 100 and features["encoded_share"] == 1.0


def test_tunnel_in_many_small_flows_amid_benign_is_alerted(synth) -> None:
    t0 = synth.T0_MS
    batches = synth.batches(synth.benign_hinted(20_000, duration_ms=240_000),
                            synth.dns_tunnel("10.1.1.77", 120, t0 + 10_000), batch_rows=400)
    alerts = run(DnsTunnelDetector(), batches)
    assert [(a["entity"], a["entity_kind"], a["target"]) for a in alerts] == [
        ("10.1.1.77", "src_ip", "exfil-example.com")]
    ALERT.make_batch({c: [a[c] for a in alerts] for c in ALERT.names})


def test_many_cdn_names_in_short_labels_are_not_a_tunnel(synth) -> None:
    cols = synth.dns_tunnel("10.1.1.5", 300, synth.T0_MS, domain="akamaiedge.net")
    cols["dns_query"] = [f"e{i}.dscb.akamaiedge.net" for i in range(300)]
    cols["dns_qtype"][:] = 1
    assert run(DnsTunnelDetector(), synth.batches(cols)) == []


def test_allow_listed_reputation_lookups_are_skipped(synth) -> None:
    cols = synth.dns_tunnel("10.1.1.5", 200, synth.T0_MS, domain="f.01.sophosxl.net")
    assert run(DnsTunnelDetector(), synth.batches(cols)) == []
    assert run(DnsTunnelDetector(allow_domains=()), synth.batches(cols)) != []


def test_dga_bot_is_alerted_and_benign_nxdomain_is_not(synth) -> None:
    t0 = synth.T0_MS
    batches = synth.batches(synth.benign_hinted(20_000, duration_ms=240_000),
                            synth.dga("10.1.1.78", 40, t0 + 30_000), batch_rows=500)
    alerts = run(DgaDetector(), batches)
    assert [(a["entity"], a["technique"], a["target"]) for a in alerts] == [("10.1.1.78", "T1568.002", "many")]
    feats = json.loads(alerts[0]["evidence"])["features"]
    assert feats["dga_domains"] >= 8 and feats["nxdomain_names"] >= 4


def test_dga_without_answers_needs_three_times_the_domains(synth) -> None:
    few = synth.dga("10.1.1.78", 12, synth.T0_MS, nx_share=0.0)
    assert run(DgaDetector(), synth.batches(few)) == []
    many = synth.dga("10.1.1.79", 60, synth.T0_MS, nx_share=0.0)
    assert [a["entity"] for a in run(DgaDetector(), synth.batches(many))] == ["10.1.1.79"]


@pytest.mark.parametrize("name,expected", [("www.example.co.uk", "example.co.uk"), ("api.bank.example", "bank.example"),
                                           ("localhost", "localhost"), ("", ""), ("a.b.123", "(bad-tld)")])
def test_registered_domain(name: str, expected: str) -> None:
    assert registered_domain(name) == expected


def test_dga_score_separates_brands_from_random_labels() -> None:
    brands = ["deutschebank", "microsoftonline", "googlesyndication", "stackoverflow", "salesforce", "raiffeisen"]
    assert max(dga_score(b) for b in brands) < 0.5
    assert min(dga_score(x) for x in ["qxvbnmtrwzpl", "kd8f7g6h5j4k", "3f9a0c1b7e5d2468"]) >= 0.5


def test_benign_dns_gives_no_alert(synth) -> None:
    batches = synth.batches(synth.benign_hinted(40_000, duration_ms=600_000, n_clients=400),
                            synth.benign_hinted(10_000, institution="bank-b", net="10.2"), batch_rows=1_000)
    assert run(DnsTunnelDetector(), batches) == [] and run(DgaDetector(), batches) == []
