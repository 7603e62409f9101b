"""Zeek logs -> FLOW / ALERT: the real conn.log baselines row for row, dns/ssl/notice, bad lines."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finsa.collectors.idslogs.growing_file import SKIPPED
from finsa.collectors.idslogs.zeek import DEFAULTED, ZeekLogParser, history_flags, stable_id
from tests.conftest import shared_data

CONN_LOGS = ["Teredo", "dns-corrupt", "gtp1_gn_normal_incl_fragmentation", "missing-syn", "pppoe", "q-in-q",
             "sctp", "wikipedia"]


def _parse(lines, name="conn.log"):
    parser = ZeekLogParser("bank-a", "tap1", name=name)
    for line in lines:
        parser.feed(line)
    return parser, *parser.drain()


def _expected(path):
    """(fields, data rows) read plainly: the header line is #fields, or the first non-# line (zeek-cut)."""
    fields, rows = None, []
    for line in path.read_text().splitlines():
        if line.startswith("#fields\t"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            if fields is None:
                fields = line.split("\t")
            else:
                rows.append(dict(zip(fields, line.split("\t"))))
    return rows


@pytest.mark.parametrize("stem", CONN_LOGS)
def test_real_conn_logs_row_for_row(stem) -> None:
    path = shared_data("flows/zeek") / f"{stem}.zeek-conn.log"
    expected = _expected(path)
    masked = sum(1 for r in expected if r.get("ts", "").startswith("X"))
    before = DEFAULTED.value(source="zeek", field="ts")
    parser, flows, alerts = _parse(path.read_text().splitlines(), name=path.name)
    assert parser.skipped == 0 and alerts is None
    assert len(flows) == len(expected) > 0
    assert flows.columns["src2dst_packets"].tolist() == [int(r["orig_pkts"]) for r in expected]
    assert flows.columns["dst2src_packets"].tolist() == [int(r["resp_pkts"]) for r in expected]
    assert DEFAULTED.value(source="zeek", field="ts") - before == masked
    assert flows.columns["flow_id"].tolist() == [stable_id(r["uid"]) for r in expected]
    if "orig_ip_bytes" in expected[0]:
        assert flows.columns["src2dst_bytes"].tolist() == [int(r["orig_ip_bytes"]) for r in expected]
        assert [r["src_ip"] for r in flows.rows()] == [r["id.orig_h"] for r in expected]
        assert flows.columns["dst_port"].tolist() == [int(r["id.resp_p"]) for r in expected]


def test_conn_details_missing_syn_and_sctp() -> None:
    _, flows, _ = _parse((shared_data("flows/zeek") / "missing-syn.zeek-conn.log").read_text().splitlines())
    row = flows.rows()[0]
    assert row["protocol"] == 6 and row["end_reason"] == 2  # SF
    assert (row["src2dst_tcp_flags"], row["dst2src_tcp_flags"]) == history_flags("^hADdFaf")
    assert row["dst2src_tcp_flags"] & 0x12 == 0x12 and row["src2dst_tcp_flags"] & 0x02 == 0  # h: SYN+ACK by resp
    assert row["last_seen_ms"] - row["first_seen_ms"] > 0
    _, sctp, _ = _parse((shared_data("flows/zeek") / "sctp.zeek-conn.log").read_text().splitlines())
    assert sctp.rows()[0]["protocol"] == 132 and sctp.rows()[0]["src2dst_tcp_flags"] == 0


def test_history_flags_case_is_direction() -> None:
    assert history_flags("S") == (2, 0)
    assert history_flags("Sh") == (2, 18)
    assert history_flags("R") == (4, 0) and history_flags("r") == (0, 4)
    assert history_flags("Dd") == (24, 24)


def test_json_conn_dns_ssl_and_rst_state() -> None:
    lines = [json.dumps({"_path": "conn", "ts": 1700000000.25, "uid": "CAbc", "id.orig_h": "2001:db8::1",
                         "id.orig_p": 33000, "id.resp_h": "2001:db8::2", "id.resp_p": 443, "proto": "tcp",
                         "duration": 2.0, "orig_pkts": 4, "orig_ip_bytes": 400, "resp_pkts": 3,
                         "resp_ip_bytes": 900, "conn_state": "RSTO", "history": "ShADR"}),
             json.dumps({"_path": "dns", "ts": 1700000001.0, "uid": "CDns", "id.orig_h": "10.0.0.5",
                         "id.orig_p": 5353, "id.resp_h": "10.0.0.53", "id.resp_p": 53, "proto": "udp",
                         "trans_id": 7, "rtt": 0.01, "query": "example.com", "qtype": 28, "rcode": 3}),
             json.dumps({"_path": "ssl", "ts": 1700000002.0, "uid": "CTls", "id.orig_h": "10.0.0.5",
                         "id.orig_p": 40000, "id.resp_h": "192.0.2.1", "id.resp_p": 443,
                         "version": "TLSv13", "server_name": "bank.example"})]
    parser, flows, _ = _parse(lines, name="")
    conn, dns, tls = flows.rows()
    assert conn["ip_version"] == 6 and conn["end_reason"] == 3 and conn["src2dst_tcp_flags"] == 2 | 16 | 8 | 4
    assert conn["first_seen_ms"] == 1700000000250 and conn["last_seen_ms"] == 1700000002250
    assert (dns["dns_query"], dns["dns_qtype"], dns["dns_rcode"], dns["protocol"], dns["dst_port"]) == \
        ("example.com", 28, 3, 17, 53)
    assert dns["src2dst_packets"] == 0
    assert (tls["tls_sni"], tls["tls_version"]) == ("bank.example", 0x0304)


def test_tsv_dns_log_with_header() -> None:
    fields = "ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto trans_id rtt query qclass qclass_name " \
             "qtype qtype_name rcode rcode_name"
    lines = ["#separator \\x09", "#unset_field\t-", "#path\tdns", "#fields\t" + fields.replace(" ", "\t"),
             "1300475167.096535\tCX\t141.142.220.202\t5353\t224.0.0.251\t5353\tudp\t0\t-\t_ipp._tcp.local\t1"
             "\tC_INTERNET\t12\tPTR\t-\t-"]
    _, flows, _ = _parse(lines, name="")
    row = flows.rows()[0]
    assert (row["dns_query"], row["dns_qtype"], row["dns_rcode"]) == ("_ipp._tcp.local", 12, 0)
    assert row["first_seen_ms"] == 1300475167096


def test_notice_to_alert() -> None:
    lines = ["#separator \\x09", "#path\tnotice", "#fields\tts\tuid\tnote\tmsg\tsrc\tdst\tp",
             "1700000000.5\t-\tScan::Port_Scan\t198.51.100.7 scanned 25 ports\t198.51.100.7\t10.1.0.9\t-",
             "1700000001.0\tCx\tSSH::Password_Guessing\tguessing\t203.0.113.4\t10.1.0.22\t22",
             "1700000002.0\tCy\tWeird::Activity\tweird\t203.0.113.5\t10.1.0.22\t22"]
    _, flows, alerts = _parse(lines, name="notice.log")
    assert flows is None
    scan, ssh, weird = alerts.rows()
    assert (scan["detector"], scan["technique"], scan["entity"], scan["target"]) == \
        ("zeek:Scan::Port_Scan", "T1046", "198.51.100.7", "10.1.0.9")
    assert (ssh["technique"], ssh["target"], ssh["time_ms"], ssh["severity"]) == ("T1110", "10.1.0.22:22",
                                                                                    1700000001000, 3)
    assert weird["technique"] == "" and len({scan["alert_id"], ssh["alert_id"], weird["alert_id"]}) == 3
    _, _, again = _parse(lines, name="notice.log")
    assert again.columns["alert_id"].tolist() == alerts.columns["alert_id"].tolist()


def test_malformed_lines_counted_by_reason() -> None:
    head = ["#separator \\x09", "#path\tconn", "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto"]
    before = {r: SKIPPED.value(source="zeek", reason=r) for r in ("wrong_field_count", "bad_address", "bad_value",
                                                                 "bad_json")}
    parser, flows, _ = _parse(head + ["1\tC1\t10.0.0.1\t1\t10.0.0.2\t2\ttcp",
                                      "1\tC2\t10.0.0.1",
                                      "1\tC3\tnot-an-ip\t1\t10.0.0.2\t2\ttcp",
                                      "1\tC4\t10.0.0.1\t70000\t10.0.0.2\t2\ttcp",
                                      "{broken json"], name="")
    assert len(flows) == 1 and parser.skipped == 4
    for reason in before:
        assert SKIPPED.value(source="zeek", reason=reason) - before[reason] == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=80),
                          st.lists(st.sampled_from(["-", "(empty)", "1.5", "tcp", "10.0.0.1", "x", "80", "SF",
                                                    "ShAF", "", "99999999999999999999"]),
                                   min_size=1, max_size=24).map("\t".join),
                          st.dictionaries(st.sampled_from(["ts", "uid", "id.orig_h", "proto", "orig_pkts",
                                                           "note", "query", "_path", "qtype", "duration"]),
                                          st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=10)),
                                          ).map(json.dumps)), max_size=30))
def test_random_lines_never_raise(lines) -> None:
    head = ["#separator \\x09", "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\t"
            "duration\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\tconn_state\thistory\tip_proto"]
    parser, flows, alerts = _parse(head + lines, name="conn.log")
    emitted = (len(flows) if flows is not None else 0) + (len(alerts) if alerts is not None else 0)
    assert emitted + parser.skipped <= len(lines)


def test_overflowing_numbers_are_skipped_not_raised() -> None:
    before = SKIPPED.value(source="zeek", reason="bad_value")
    parser, flows, alerts = _parse(['{"ts": 1, "uid": "C1", "id.orig_h": "10.0.0.1", "orig_pkts": Infinity}',
                                    '{"ts": 1, "note": "Scan::Port_Scan", "src": "10.0.0.1", "dst": "10.0.0.2",'
                                    ' "p": Infinity}'], name="")
    assert flows is None and parser.skipped == 1
    assert SKIPPED.value(source="zeek", reason="bad_value") == before + 1
    assert alerts.rows()[0]["target"] == "10.0.0.2"  # an unreadable port leaves the address alone


def test_doctests() -> None:
    import doctest

    from finsa.collectors.idslogs import zeek as zeeklog
    result = doctest.testmod(zeeklog)
    assert result.failed == 0 and result.attempted > 0


HTTP_TSV = """#separator \\x09
#set_separator\t,
#empty_field\t(empty)
#unset_field\t-
#path\thttp
#open\t2025-06-01-10-00-00
#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\ttrans_depth\tmethod\thost\turi\treferrer\tversion\tuser_agent\torigin\trequest_body_len\tresponse_body_len\tstatus_code\tstatus_msg\tinfo_code\tinfo_msg\ttags\tusername\tpassword\tproxied\torig_fuids\torig_filenames\torig_mime_types\tresp_fuids\tresp_filenames\tresp_mime_types
#types\ttime\tstring\taddr\tport\taddr\tport\tcount\tstring\tstring\tstring\tstring\tstring\tstring\tstring\tcount\tcount\tcount\tstring\tcount\tstring\tset[enum]\tstring\tstring\tset[string]\tvector[string]\tvector[string]\tvector[string]\tvector[string]\tvector[string]\tvector[string]
1748772000.120000\tCHhAvVGS1DHFjwGM9\t10.1.0.5\t51034\t198.51.100.80\t80\t1\tGET\tportal.bank-a.example\t/login.php?user=admin'--\t-\t1.1\tcurl/8.5.0\t-\t0\t1532\t200\tOK\t-\t-\t(empty)\t-\t-\t-\t-\t-\t-\tFq1\t-\ttext/html
1748772000.480000\tCHhAvVGS1DHFjwGM9\t10.1.0.5\t51034\t198.51.100.80\t80\t2\tPOST\tportal.bank-a.example\t/login.php\t-\t1.1\tcurl/8.5.0\t-\t27\t0\t-\t-\t-\t-\t(empty)\t-\t-\t-\t-\t-\t-\t-\t-\t-
#close\t2025-06-01-10-00-05
"""

SSH_JSON = ('{"ts":1748772001.512593,"uid":"CRJuHdVW0XPVINV8a","id.orig_h":"203.0.113.66","id.orig_p":39395,'
            '"id.resp_h":"10.1.0.22","id.resp_p":22,"version":2,"auth_success":false,"auth_attempts":3,'
            '"direction":"INBOUND","client":"SSH-2.0-libssh_0.9.6","server":"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.10",'
            '"cipher_alg":"chacha20-poly1305@openssh.com","mac_alg":"umac-64-etm@openssh.com","compression_alg":"none",'
            '"kex_alg":"curve25519-sha256","host_key_alg":"ecdsa-sha2-nistp256","host_key":"e3:1f"}')


def test_http_log_requests_become_http_hints() -> None:
    parser, flows, alerts = _parse(HTTP_TSV.splitlines(), name="http.log")
    assert parser.skipped == 0 and alerts is None and len(flows) == 2
    first, second = flows.rows()
    assert (first["http_host"], first["http_method"], first["http_uri"], first["http_status"]) == (
        "portal.bank-a.example", "GET", "/login.php?user=admin'--", 200)
    assert (second["http_method"], second["http_status"], second["src2dst_packets"]) == ("POST", 0, 0)
    assert (first["src_ip"], first["dst_port"], first["protocol"], first["first_seen_ms"]) == (
        "10.1.0.5", 80, 6, 1748772000120)
    assert first["flow_id"] == stable_id("CHhAvVGS1DHFjwGM9", "http", "1") != second["flow_id"]


def test_ssh_log_client_banner_and_kind_from_fields() -> None:
    for name in ("ssh.log", "sensor-7.json"):  # by file name, or by the fields present
        parser, flows, _ = _parse([SSH_JSON.replace('"ts"', '"_path":"x","ts"') if name != "ssh.log" else SSH_JSON],
                                  name=name)
        row = flows.rows()[0]
        assert parser.skipped == 0
        assert (row["ssh_banner"], row["dst_port"], row["src_ip"]) == ("SSH-2.0-libssh_0.9.6", 22, "203.0.113.66")
        assert row["flow_id"] == stable_id("CRJuHdVW0XPVINV8a", "ssh") and row["dst2src_packets"] == 0


def test_ssh_hints_do_not_count_as_brute_force_attempts() -> None:
    from finsa.detectors.bruteforce import BruteForceDetector
    from finsa.wire import RecordBatch

    conn, ssh = [], []
    for i in range(20):
        uid, ts = f"C{i:04d}", 1748772000 + 2 * i
        conn.append(json.dumps({"_path": "conn", "ts": ts, "uid": uid, "id.orig_h": "203.0.113.66",
                                "id.orig_p": 40000 + i, "id.resp_h": "10.1.0.22", "id.resp_p": 22, "proto": "tcp",
                                "duration": 1.5, "orig_pkts": 12, "orig_ip_bytes": 2100 + i % 3, "resp_pkts": 10,
                                "resp_ip_bytes": 3000, "history": "ShADadFf", "conn_state": "SF"}))
        ssh.append(json.dumps({**json.loads(SSH_JSON), "_path": "ssh", "ts": ts, "uid": uid, "id.orig_p": 40000 + i}))
    _, conn_flows, _ = _parse(conn)
    _, ssh_flows, _ = _parse(ssh)
    alone = BruteForceDetector().process(conn_flows)
    both = BruteForceDetector().process(RecordBatch.concat([conn_flows, ssh_flows]))
    assert len(alone) == len(both) == 1
    assert json.loads(alone[0]["evidence"])["features"]["attempts"] == json.loads(both[0]["evidence"])["features"]["attempts"] == 20


def test_http_log_fills_the_flow_v2_lists() -> None:
    """The request item (method, host, URI, status, response MIME type), and an executable seen by
    Zeek's file analysis as the meter's exe marker."""
    exe = HTTP_TSV.replace("\tFq1\t-\ttext/html", "\tFq1\t-\tapplication/x-dosexec")
    first = _parse(exe.splitlines(), name="http.log")[1].rows()[0]
    assert first["http_requests"] == "GET\tportal.bank-a.example\t/login.php?user=admin'--\t200\tapplication/x-dosexec"
    assert first["app_markers"] == "exe_from_dst"
    plain = _parse(HTTP_TSV.splitlines(), name="http.log")[1].rows()
    assert plain[0]["app_markers"] == "" and plain[0]["http_requests"].endswith("\t200\ttext/html")
