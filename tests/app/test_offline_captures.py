"""finsa detect on the public labelled attack captures: what the default detectors must find.

Only captures the default detectors are known to detect are asserted (attacker and technique
from each capture's label); the full table of results is in the backtest report, not a test.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import shared_data
from finsa.app.cli import main

FOUND = [  # capture, technique family, the entity the label names
    ("evilfingers-nmap/nmap-tcp-syn-scan.pcap", "T1046", "192.168.1.10"),
    ("esnet-curated/masscan-tcp-0-1000.pcap", "T1046", "172.31.15.102"),
    ("suricata-verify/syn-flood-200-syn.pcap", "T1499", "192.0.2.10"),
    ("stopddos/synflood-spoofed.pcap", "T1499", "10.10.10.10"),
    ("chrissanders-packets/dvwa-sql-injection.pcapng", "T1190", "10.2.2.101"),
    ("evilfingers-exploits/smf-sqli-cve-2007-5646.pcap", "T1190", "172.16.16.4"),
    ("elastic-examples/dns-tunnel-iodine.pcap", "T1071", "10.0.2.30"),
    ("chrissanders-packets/arp-poisoning.pcapng", "T1557", "172.16.0.105"),  # from its ARP bindings
]


@pytest.mark.parametrize("capture, technique, entity", FOUND)
def test_detect_finds_the_labelled_attack(capture, technique, entity, capsys) -> None:
    path = shared_data("attacks") / capture
    assert main(["detect", str(path), "--institution", "lab"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert any(r["technique"].split(".")[0] == technique and entity in (r["entity"], r["target"].rsplit(":", 1)[0])
               for r in rows), rows
