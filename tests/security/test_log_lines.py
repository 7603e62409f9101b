"""Finding 6: an eve.json (or Zeek JSON) line with a lone surrogate escape passed the parser, then
encoding the batch raised; the log source thread died with its read position past the lost lines.
Now the line is counted (``bad_encoding``) and skipped, and the lines around it are sent."""

from __future__ import annotations

import json

from finsa import wire
from finsa.collectors.idslogs.growing_file import SKIPPED
from finsa.collectors.idslogs.suricata_eve import EveParser
from finsa.collectors.idslogs.zeek import ZeekLogParser
from tests.collectors.idslogs.test_suricata_eve import EVENTS

SURROGATE = "\\ud800"  # as it appears in the JSON text


def _evil_dns() -> str:
    good = json.dumps(EVENTS[2])
    return good.replace("x1y2.tunnel.example", f"x{SURROGATE}.tunnel.example")


def test_a_lone_surrogate_costs_one_eve_line_and_the_batch_still_encodes() -> None:
    parser = EveParser("bank-a", "tap1")
    before = SKIPPED.value(source="suricata", reason="bad_encoding")
    alert_evil = json.dumps(EVENTS[6]).replace("Possible SQL", f"Possible {SURROGATE} SQL")
    for line in (json.dumps(EVENTS[2]), _evil_dns(), alert_evil, json.dumps(EVENTS[3]), json.dumps(EVENTS[6])):
        parser.feed(line)
    assert SKIPPED.value(source="suricata", reason="bad_encoding") == before + 1  # the DNS name is kept raw
    flows, alerts = parser.drain()
    assert len(wire.decode_batch(wire.encode_batch(flows))) == 2
    assert len(wire.decode_batch(wire.encode_batch(alerts))) == 2  # the signature travels JSON-escaped


def test_a_lone_surrogate_costs_one_zeek_json_line() -> None:
    parser = ZeekLogParser("bank-a", "tap1", name="dns.log")
    rec = {"ts": 1717236001.1, "uid": "C1", "id.orig_h": "10.1.0.5", "id.orig_p": 5300, "id.resp_h": "10.1.0.53",
           "id.resp_p": 53, "proto": "udp", "query": "bank.example", "qtype_name": "A", "rcode_name": "NOERROR"}
    before = SKIPPED.value(source="zeek", reason="bad_encoding")
    parser.feed(json.dumps(rec))
    parser.feed(json.dumps(rec).replace("bank.example", f"b{SURROGATE}.example"))
    assert SKIPPED.value(source="zeek", reason="bad_encoding") == before + 1
    flows, _ = parser.drain()
    assert len(wire.decode_batch(wire.encode_batch(flows))) == 1


def test_the_log_source_sends_the_lines_after_a_bad_one(tmp_path) -> None:
    from finsa.collectors.agent.sources import FAILURES, LogSource

    eve = tmp_path / "eve.json"
    eve.write_text("\n".join([json.dumps(EVENTS[2]), _evil_dns(), json.dumps(EVENTS[3])]) + "\n")
    got: list = []
    failures = FAILURES.value(kind="suricata")
    LogSource("suricata", [eve], "bank-a", "tap1", lambda b: got.append(wire.encode_batch(b)), from_start=True,
              follow=False, state_dir=tmp_path).start().join(30)
    assert FAILURES.value(kind="suricata") == failures
    assert sum(len(wire.decode_batch(p)) for p in got) == 2
