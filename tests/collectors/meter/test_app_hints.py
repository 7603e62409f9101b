"""Application hints in flow records: DNS, HTTP, TLS (SNI, version, JA4), SSH."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from finsa.collectors.meter.app_hints import parse_dns, parse_http, parse_ssh
from finsa.collectors.meter.flowmeter import FlowMeter, meter_capture
from finsa.collectors.pcap.capture import PacketBatch
from finsa.collectors.meter.tls_hello import ja4, parse_client_hello
from finsa.wire import RecordBatch
from tests.conftest import shared_data


def _rows(path, profile="nfstream") -> list[dict]:
    return RecordBatch.concat(list(meter_capture(path, profile))).rows()


def test_wikipedia_http_hosts_and_dns_names() -> None:
    rows = _rows(shared_data("flows/zeek") / "wikipedia.pcap", "zeek")
    hosts = {r["http_host"] for r in rows} - {""}
    assert {"meta.wikimedia.org", "upload.wikimedia.org", "www.wikipedia.org", "bits.wikimedia.org"} <= hosts
    http = [r for r in rows if r["http_host"]]
    assert all(r["http_method"] == "GET" and r["http_uri"].startswith("/") for r in http)
    assert all(r["http_status"] in (200, 304) for r in http)
    dns = [r for r in rows if r["dns_query"]]
    assert "upload.wikimedia.org" in {r["dns_query"] for r in dns}
    nx = [r for r in dns if r["dns_query"].endswith("ncsa.uiuc.edu")]
    assert nx and all(r["dns_rcode"] == 3 for r in nx)  # NXDOMAIN from the response, query from the request


def test_google_ssl_offers_tls_1_0_in_an_sslv2_hello() -> None:
    [row] = _rows(shared_data("flows/nfstream") / "google_ssl.pcap")
    assert row["tls_version"] == 0x0301
    assert row["tls_sni"] == ""  # an SSLv2-format ClientHello carries no extensions, so no SNI


def test_sni_version_and_ja4_from_client_hellos() -> None:
    rows = _rows(shared_data("flows/nfstream") / "http_ipv6.pcap")
    tls = [r for r in rows if r["tls_sni"]]
    assert {"www.ntop.org", "s-static.ak.facebook.com"} <= {r["tls_sni"] for r in tls}
    assert all(r["tls_version"] == 0x0303 and r["tls_ja4"].startswith("t12d") for r in tls)
    a, b, c = tls[0]["tls_ja4"].split("_")
    assert len(a) == 10 and len(b) == len(c) == 12


def test_ssh_banner() -> None:
    rows = _rows(shared_data("flows/nfstream") / "ssh.pcap")
    assert rows[0]["ssh_banner"].startswith("SSH-2.0-")


def test_dns_over_tcp_and_first_hint_is_kept() -> None:
    query = bytes.fromhex("abcd01000001000000000000") + b"\x04bank\x02ex\x00" + b"\x00\x01\x00\x01"
    other = bytes.fromhex("abcd01000001000000000000") + b"\x05other\x02ex\x00" + b"\x00\x1c\x00\x01"
    frames = [(0, bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.53") / TCP(sport=999, dport=53, flags="PA")
                         / (len(q).to_bytes(2, "big") + q))) for q in (query, other)]
    meter = FlowMeter("nfstream")
    meter.add(PacketBatch.from_packets(frames))
    [row] = meter.flush().rows()
    assert (row["dns_query"], row["dns_qtype"]) == ("bank.ex", 1)


def test_parsers_refuse_garbage() -> None:
    for junk in (b"", b"\x00" * 11, b"\xff" * 40, b"GET", b"HTTP/1.1 abc", b"\x16\x03\x01\x00\x05\x01\x00"):
        assert (parse_http(junk), parse_ssh(junk), parse_client_hello(junk)) == (None, None, None), junk
        assert "dns_query" not in (parse_dns(junk) or {}), junk  # a header may be read, never a name
    assert parse_dns(b"\xff" * 12) is None  # a header and nothing after it
    # a response header (rcode 15) and then a label length over 63: the rcode, no query name
    assert parse_dns(b"\xff" * 40) == {"dns_rcode": 15}
    assert parse_http(b"HTTP/1.1 404 Not Found\r\n") == {"http_status": 404}
    assert parse_ssh(b"SSH-2.0-OpenSSH_9.6\r\n") == {"ssh_banner": "SSH-2.0-OpenSSH_9.6"}


def test_ja4_known_shape() -> None:
    # the example ClientHello fields of the JA4 specification (FoxIO, README "JA4 example")
    assert ja4(0x0304, True, [0x1301] * 15, [0] * 16, "h2", []).startswith("t13d1516h2_")
    assert ja4(0x0303, False, [], [], "", []) == "t12i000000_000000000000_000000000000"
