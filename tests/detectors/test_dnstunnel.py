"""DNS tunnels and DGA bots are found; ordinary name resolution is not."""

from __future__ import annotations

import hashlib
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


def _questions(client: str, names: list[str], qtypes: list[int], per_flow: int = 1) -> object:
    """DNS flows of ``client`` to a resolver, ``per_flow`` questions in each (dns_queries list)."""
    from finsa.wire import FLOW
    groups = [list(range(i, min(i + per_flow, len(names)))) for i in range(0, len(names), per_flow)]
    n = len(groups)
    lists = ["\n".join(f"{names[j]}/{qtypes[j]}" for j in g) if per_flow > 1 else "" for g in groups]
    return FLOW.make_batch({"src_ip": [client] * n, "dst_ip": ["10.1.100.3"] * n, "dst_port": [53] * n,
                            "protocol": [17] * n, "src2dst_packets": [len(g) for g in groups],
                            "src2dst_bytes": [90 * len(g) for g in groups], "dns_query": [names[g[0]] for g in groups],
                            "dns_qtype": [qtypes[g[0]] for g in groups], "dns_queries": lists,
                            "first_seen_ms": [1_700_000_000_000 + 1_000 * i for i in range(n)],
                            "last_seen_ms": [1_700_000_000_500 + 1_000 * i for i in range(n)],
                            "flow_id": list(range(1, n + 1)), "institution_id": ["bank-a"] * n})


@pytest.mark.parametrize("kind", ["iodine_handshake", "dnscat_hex", "txt_commands"])
def test_low_volume_tunnels_alert(kind: str) -> None:
    """12-22 questions: iodine's NULL handshake in one flow, dnscat2's hex labels over TXT/CNAME/MX,
    commands fetched one TXT record at a time."""
    if kind == "iodine_handshake":
        names = [f"{p}.t1.tunnel-example.com" for p in ("yrb0pe", "vaaaakaxj2u", "laczi1dwmfbaywb0fm5xhkrgz0heotzq",
                                                        "yrb0ph", "z0pia", "z0pjb", "ya0", "ya1", "ya2", "ya3", "ya4", "ya5")]
        batch = _questions("192.168.1.17", names, [10] * len(names), per_flow=12)
    elif kind == "dnscat_hex":
        names = [f"{hashlib.sha1(bytes([i])).hexdigest()[:34]}.tunnel-example.com" for i in range(12)]
        batch = _questions("192.168.1.17", names, [16, 5, 15] * 4)
    else:
        names = ["l.ns.tunnel-example.pl"] + [f"l.{i}.ns.tunnel-example.pl" for i in range(1, 18)] + ["c.1-1.2406.ns.tunnel-example.pl"] * 20
        batch = _questions("192.168.100.121", names, [16] * len(names))
    alerts = DnsTunnelDetector().process(batch)
    assert [(a["entity"], a["technique"]) for a in alerts] == [(batch.rows()[0]["src_ip"], "T1071.004")]
    assert json.loads(alerts[0]["evidence"])["features"]["rule"] == "low_volume"


def test_low_volume_look_alikes_do_not_alert() -> None:
    """A mail server's SPF/DKIM/DMARC TXT look-ups, DNS blocklist queries (an address in the name),
    a CDN's hashed A-record names, and MX look-ups of many different domains."""
    spf = [f"_spf{i}.mail-example.com" for i in range(15)] + [f"s{i}._domainkey.mail-example.com" for i in range(15)]
    dnsbl = [f"{i}.{i + 1}.113.203.bl.blocklist-example.org" for i in range(30)]
    cdn = [f"{hashlib.sha1(bytes([i])).hexdigest()[:12]}.cdn-example.net" for i in range(30)]
    mx = [f"mx-target-{i}.example" for i in range(30)]
    for names, qtype in ((spf, 16), (dnsbl, 16), (cdn, 1), (mx, 15)):
        assert DnsTunnelDetector().process(_questions("10.1.0.25", names, [qtype] * len(names))) == [], names[0]
