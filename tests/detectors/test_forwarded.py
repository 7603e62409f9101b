"""Suricata EVE alerts and Zeek notices become valid ALERT rows; anything else is counted and dropped."""

from __future__ import annotations

import json

from finsa.collectors.idslogs.suricata_eve import EveParser
from finsa.collectors.idslogs.zeek import ZeekLogParser
from finsa.detectors.forwarded import REJECTED, ForwardedDetector, from_suricata_eve, from_zeek_notice
from finsa.wire import ALERT, FLOW

EVE = {"timestamp": "2025-06-01T10:00:00.250000+0000", "event_type": "alert", "src_ip": "203.0.113.9",
       "src_port": 4444, "dest_ip": "2001:db8::80", "dest_port": 443, "proto": "TCP", "flow_id": 1234567,
       "alert": {"signature_id": 2024897, "signature": "ET EXPLOIT Apache log4j RCE", "category": "Attempted RCE",
                 "severity": 2, "metadata": {"mitre_technique_id": ["T1190"], "mitre_tactic_id": ["TA0001"]}}}
NOTICE = {"ts": 1748772000.5, "uid": "CHhAvVGS1DHFjwGM9", "id.orig_h": "198.51.100.7", "id.resp_h": "10.1.0.22",
          "id.resp_p": 22, "note": "SSH::Password_Guessing", "msg": "198.51.100.7 appears to be guessing passwords",
          "src": "198.51.100.7"}


def test_suricata_alert_maps_to_a_valid_row() -> None:
    row = from_suricata_eve(EVE, "bank-a")
    assert (row["technique"], row["severity"], row["entity"], row["target"], row["detector"]) == (
        "T1190", 4, "203.0.113.9", "[2001:db8::80]:443", "suricata")
    assert row["time_ms"] == 1748772000250
    assert from_suricata_eve(EVE, "bank-a")["alert_id"] == row["alert_id"]  # re-forwarded: same id
    assert len(ALERT.make_batch({c: [row[c]] for c in ALERT.names})) == 1


def test_suricata_without_mitre_metadata_and_severity_mapping() -> None:
    event = {**EVE, "alert": {**EVE["alert"], "metadata": {}, "severity": 1}}
    row = from_suricata_eve(event, "bank-a")
    assert (row["technique"], row["severity"]) == ("", 5)
    assert from_suricata_eve({**EVE, "alert": {**EVE["alert"], "severity": 3}}, "bank-a")["severity"] == 3


def test_zeek_notice_maps_to_a_valid_row() -> None:
    row = from_zeek_notice(NOTICE, "bank-a")
    assert (row["technique"], row["entity"], row["target"], row["time_ms"], row["detector"]) == (
        "T1110", "198.51.100.7", "10.1.0.22:22", 1748772000500, "zeek:SSH::Password_Guessing")
    assert len(ALERT.make_batch({c: [row[c]] for c in ALERT.names})) == 1


def test_non_alerts_and_malformed_events_are_counted() -> None:
    before = REJECTED.value(source="suricata") + REJECTED.value(source="zeek")
    assert from_suricata_eve({"event_type": "flow"}, "bank-a") is None
    assert from_suricata_eve({**EVE, "timestamp": "yesterday"}, "bank-a") is None
    assert from_zeek_notice({"note": "x"}, "bank-a") is None
    assert REJECTED.value(source="suricata") + REJECTED.value(source="zeek") == before + 3


def test_the_registry_stand_in_says_nothing_on_flows() -> None:
    assert ForwardedDetector().process(FLOW.make_batch({"dst_port": [80]})) == []


def _collected(parser, record: dict) -> dict:
    parser.feed(json.dumps(record))
    return parser.drain()[1].rows()[0]


def test_forwarded_and_collected_events_give_the_same_alert() -> None:
    """An agent tailing the log and a forwarded event name the alert alike (one mapping)."""
    sql = {**NOTICE, "note": "HTTP::SQL_Injection_Attacker", "id.resp_p": 80}
    for record in (NOTICE, sql):
        forwarded, collected = from_zeek_notice(record, "bank-a"), _collected(ZeekLogParser("bank-a", "t", "notice.log"), record)
        assert forwarded == collected
    assert from_zeek_notice(sql, "bank-a")["technique"] == "T1190"
    assert from_suricata_eve(EVE, "bank-a") == _collected(EveParser("bank-a", "t"), EVE)
