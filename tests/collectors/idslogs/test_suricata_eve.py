"""Suricata EVE JSON -> FLOW / ALERT, on small fixtures in Suricata's documented format."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from finsa.collectors.idslogs.growing_file import SKIPPED
from finsa.collectors.idslogs.suricata_eve import EveParser

TS = "2025-06-01T10:00:01.123456+0000"
BASE = {"timestamp": TS, "flow_id": 1581049930718913, "in_iface": "eth0", "src_ip": "10.1.0.5",
        "src_port": 51000, "dest_ip": "192.0.2.80", "dest_port": 443, "proto": "TCP"}
EVENTS = [
    {**BASE, "event_type": "flow", "app_proto": "tls",
     "flow": {"pkts_toserver": 12, "pkts_toclient": 10, "bytes_toserver": 1500, "bytes_toclient": 9000,
              "start": "2025-06-01T10:00:00.000000+0000", "end": "2025-06-01T10:00:02.500000+0000", "age": 2,
              "state": "closed", "reason": "timeout", "alerted": False},
     "tcp": {"tcp_flags": "1b", "tcp_flags_ts": "1b", "tcp_flags_tc": "1a", "syn": True, "fin": True,
             "psh": True, "ack": True, "state": "closed"}},
    {**BASE, "event_type": "tls",
     "tls": {"subject": "CN=bank.example", "issuerdn": "CN=CA", "serial": "00", "fingerprint": "ab:cd",
             "sni": "bank.example", "version": "TLS 1.2", "notbefore": "2025-01-01T00:00:00",
             "ja4": "t13d1516h2_8daaf6152771_b186095e22b6"}},
    {**BASE, "event_type": "dns", "src_port": 53111, "dest_port": 53, "proto": "UDP", "dest_ip": "10.1.0.53",
     "dns": {"type": "query", "id": 4242, "rrname": "x1y2.tunnel.example", "rrtype": "TXT", "tx_id": 0}},
    {**BASE, "event_type": "dns", "src_port": 53111, "dest_port": 53, "proto": "UDP", "dest_ip": "10.1.0.53",
     "dns": {"version": 2, "type": "answer", "id": 4242, "flags": "8183", "qr": True, "rrname": "x1y2.tunnel.example",
             "rrtype": "TXT", "rcode": "NXDOMAIN"}},
    {**BASE, "event_type": "dns", "src_port": 53112, "dest_port": 53, "proto": "UDP", "dest_ip": "10.1.0.53",
     "dns": {"version": 3, "type": "request", "id": 7, "queries": [{"rrname": "bank.example", "rrtype": "AAAA"}]}},
    {**BASE, "event_type": "http", "dest_port": 80,
     "http": {"hostname": "intranet.bank.example", "url": "/login.php?id=1'--", "http_user_agent": "sqlmap",
              "http_method": "POST", "protocol": "HTTP/1.1", "status": 403, "length": 12}},
    {**BASE, "event_type": "alert", "src_ip": "203.0.113.9", "dest_ip": "10.1.0.80", "dest_port": 80,
     "alert": {"action": "allowed", "gid": 1, "signature_id": 2024897, "rev": 3,
               "signature": "ET EXPLOIT Possible SQL injection", "category": "Web Application Attack",
               "severity": 1, "metadata": {"mitre_technique_id": ["T1190"], "signature_severity": ["Major"]}}},
    {**BASE, "event_type": "alert", "src_ip": "2001:db8::9", "dest_ip": "2001:db8::1", "dest_port": 22,
     "alert": {"signature_id": 2001219, "signature": "ET SCAN Potential SSH Scan", "severity": 3}},
    {"timestamp": TS, "event_type": "stats", "stats": {"uptime": 10}},
]


def _parse(lines):
    parser = EveParser("bank-a", "tap1")
    for line in lines:
        parser.feed(line)
    return parser, *parser.drain()


def test_eve_file_maps_every_event(tmp_path) -> None:
    eve = tmp_path / "eve.json"
    eve.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    parser, flows, alerts = _parse(eve.read_text().splitlines())
    assert parser.skipped == 0 and len(flows) == 6 and len(alerts) == 2
    flow, tls, query, answer, v3, http = flows.rows()
    assert flow["flow_id"] == 1581049930718913 and flow["protocol"] == 6
    assert (flow["src2dst_packets"], flow["src2dst_bytes"], flow["dst2src_packets"], flow["dst2src_bytes"]) == \
        (12, 1500, 10, 9000)
    assert (flow["first_seen_ms"], flow["last_seen_ms"]) == (1748772000000, 1748772002500)
    assert (flow["src2dst_tcp_flags"], flow["dst2src_tcp_flags"], flow["end_reason"]) == (0x1B, 0x1A, 2)
    assert (flow["src_ip"], flow["dst_ip"], flow["dst_port"]) == ("10.1.0.5", "192.0.2.80", 443)
    assert (tls["tls_sni"], tls["tls_version"], tls["tls_ja4"]) == ("bank.example", 0x0303,
                                                                   "t13d1516h2_8daaf6152771_b186095e22b6")
    assert tls["src2dst_packets"] == 0 and tls["first_seen_ms"] == 1748772001123
    assert (query["dns_query"], query["dns_qtype"], query["protocol"]) == ("x1y2.tunnel.example", 16, 17)
    assert answer["dns_rcode"] == 3
    assert (v3["dns_query"], v3["dns_qtype"]) == ("bank.example", 28)
    assert (http["http_host"], http["http_method"], http["http_uri"], http["http_status"]) == \
        ("intranet.bank.example", "POST", "/login.php?id=1'--", 403)
    assert http["http_requests"] == "POST\tintranet.bank.example\t/login.php?id=1'--\t403\t"  # FLOW v2 list of one
    sqli, scan = alerts.rows()
    assert (sqli["detector"], sqli["technique"], sqli["severity"], sqli["entity"], sqli["target"]) == \
        ("suricata", "T1190", 5, "203.0.113.9", "10.1.0.80:80")
    assert (scan["technique"], scan["severity"], scan["target"]) == ("", 3, "[2001:db8::1]:22")
    assert json.loads(sqli["evidence"])["features"]["signature_id"] == 2024897
    _, _, again = _parse(eve.read_text().splitlines())
    assert again.columns["alert_id"].tolist() == alerts.columns["alert_id"].tolist()


def test_rst_and_forced_flows() -> None:
    rst = {**EVENTS[0], "tcp": {"tcp_flags_ts": "06", "tcp_flags_tc": "14"}}
    forced = {**EVENTS[0], "proto": "UDP", "tcp": {}, "flow": {**EVENTS[0]["flow"], "reason": "shutdown"}}
    _, flows, _ = _parse([json.dumps(rst), json.dumps(forced)])
    assert flows.columns["end_reason"].tolist() == [3, 4]


def test_malformed_lines_counted_by_reason() -> None:
    reasons = ("bad_json", "bad_address", "bad_time", "no_query", "bad_value")
    before = {r: SKIPPED.value(source="suricata", reason=r) for r in reasons}
    lines = ["{not json", json.dumps({**EVENTS[0], "src_ip": "nowhere"}), json.dumps({**EVENTS[0], "timestamp": "x"}),
             json.dumps({**EVENTS[2], "dns": {"type": "query"}}),
             json.dumps({**EVENTS[0], "flow": {**EVENTS[0]["flow"], "pkts_toserver": -1}})]
    parser, flows, alerts = _parse(lines)
    assert flows is None and alerts is None and parser.skipped == 5
    for reason in reasons:
        assert SKIPPED.value(source="suricata", reason=reason) - before[reason] == 1


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                    st.sampled_from([TS, "10.0.0.1", "TCP", "1b", "A"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.text(max_size=60),
    st.sampled_from(EVENTS).flatmap(lambda e: st.dictionaries(
        st.sampled_from(sorted(e)), _VALUES).map(lambda patch: json.dumps({**e, **patch}))),
    st.fixed_dictionaries({"event_type": st.sampled_from(["flow", "dns", "tls", "http", "alert"])},
                          optional={"flow": st.dictionaries(st.text(max_size=14), _VALUES),
                                    "dns": st.dictionaries(st.sampled_from(["rrname", "rrtype", "rcode", "queries"]),
                                                           _VALUES),
                                    "alert": st.dictionaries(st.sampled_from(["severity", "metadata"]), _VALUES),
                                    "timestamp": _VALUES, "src_ip": _VALUES, "dest_ip": _VALUES,
                                    "flow_id": _VALUES}).map(json.dumps)), max_size=20))
def test_random_lines_never_raise(lines) -> None:
    parser, flows, alerts = _parse(lines)
    emitted = (len(flows) if flows is not None else 0) + (len(alerts) if alerts is not None else 0)
    assert emitted + parser.skipped <= len(lines)


def test_doctests() -> None:
    import doctest

    from finsa.collectors.idslogs import suricata_eve
    result = doctest.testmod(suricata_eve)
    assert result.failed == 0 and result.attempted > 0
