"""finsa backtest: the scoring rules, and the detection goals on the default scenario.

The goals (every episode detected, median time to detect under 60 s, scans and floods under
10 s, fewer than 10 false alerts per million benign flows) are checked for EVERY attack type
in the ground truth: a type whose detector is not registered yet fails here on purpose.
"""

from __future__ import annotations

import json

import pytest

from finsa.scenario.generator import generate_scenario
from finsa.app.backtest import episodes, family, matches, score
from finsa.app.backtest_command import backtest
from finsa.wire import ALERT, FLOW

FAST = {"port_scan", "syn_flood"}  # scans and floods: under 10 s
ATTACK_TYPES = ("port_scan", "syn_flood", "ssh_bruteforce", "dns_tunnel", "dga", "beaconing", "exfiltration",
                "lateral_movement", "web_attack", "arp_spoof")

TRUTH = {"attacks": [
    {"id": "dns_tunnel-1", "attack": "dns_tunnel", "technique": "T1071.004", "attacker": "203.0.113.53",
     "domain": "t.example", "relays": ["10.3.0.53"],
     "victims": [{"institution": "sec-a", "address": "10.3.1.47", "start_ms": 10_000, "end_ms": 50_000}]},
    {"id": "port_scan-2", "attack": "port_scan", "technique": "T1046", "attacker": "203.0.113.66",
     "victims": [{"institution": "bank-a", "address": "192.0.2.10", "start_ms": 1_000, "end_ms": 5_000},
                 {"institution": "bank-a", "address": "192.0.2.22", "start_ms": 6_000, "end_ms": 9_000},
                 {"institution": "sec-a", "address": "192.0.2.74", "start_ms": 9_000, "end_ms": 12_000}]}]}


def _alert(**values) -> dict:
    base = {"institution_id": "sec-a", "technique": "T1071", "entity": "10.3.1.47", "target": "t.example",
            "time_ms": 20_000}
    return {**base, **values}


def test_episodes_are_attack_and_institution() -> None:
    eps = episodes(TRUTH)
    assert [(e.attack, e.institution, e.start_ms, e.end_ms) for e in eps] == [
        ("dns_tunnel", "sec-a", 10_000, 50_000), ("port_scan", "bank-a", 1_000, 9_000),
        ("port_scan", "sec-a", 9_000, 12_000)]
    assert family("T1071.004") == family("T1071") == "T1071" and family("anomaly") == "anomaly"


@pytest.mark.parametrize("changes, expected", [
    ({}, True),                                           # parent technique matches the sub-technique
    ({"technique": "T1071.004"}, True),
    ({"technique": "T1568.002"}, False),                  # other family
    ({"institution_id": "bank-a"}, False),                # other institution
    ({"entity": "10.3.0.53", "target": "many"}, True),    # the relaying resolver
    ({"entity": "t.example", "target": ""}, True),        # the domain
    ({"entity": "10.9.9.9", "target": "10.3.1.47:53"}, True),  # the victim as target, port stripped
    ({"entity": "10.9.9.9", "target": "many"}, False),
    ({"time_ms": 5_000}, True), ({"time_ms": 4_999}, False),        # 5 s before the start
    ({"time_ms": 170_000}, True), ({"time_ms": 170_001}, False),    # 120 s after the end
])
def test_matching_rule(changes, expected) -> None:
    tunnel = episodes(TRUTH)[0]
    assert matches(_alert(**changes), tunnel) is expected


def test_score_counts_detections_related_and_false_alerts() -> None:
    rows = [_alert(time_ms=25_000), _alert(time_ms=30_000),
            _alert(technique="anomaly", time_ms=12_000),                          # related
            _alert(institution_id="bank-a", technique="T1046", entity="203.0.113.66", target="many",
                   time_ms=3_000),
            _alert(institution_id="bank-a", technique="T1046", entity="198.18.0.1", target="many",
                   time_ms=3_000)]                                                 # false
    alerts = ALERT.make_batch({k: [r[k] for r in rows] for k in rows[0]})
    flows = FLOW.make_batch({"institution_id": ["bank-a"] * 4, "src_ip": ["203.0.113.66", "1.2.3.4", "1.2.3.4", "5.6.7.8"],
                             "dst_ip": ["192.0.2.10"] * 4, "first_seen_ms": [2_000, 2_000, 2_000, 90_000],
                             "last_seen_ms": [2_000, 2_000, 2_000, 90_000]})
    report = score(TRUTH, alerts, flows)
    by = {r["attack"]: r for r in report["attacks"]}
    assert by["dns_tunnel"]["detected"] == 1 and by["dns_tunnel"]["ttd_median_s"] == 15.0
    assert by["port_scan"]["episodes"] == 2 and by["port_scan"]["detected"] == 1
    assert by["port_scan"]["ttd_max_s"] == 2.0 and by["port_scan"]["false_alerts"] == 1
    total = report["total"]
    assert (total["matched"], total["related"], total["false_alerts"]) == (3, 1, 1)
    assert total["benign_flows"] == 1 and total["false_per_million"] == 1e6  # 3 flows touch the scan at bank-a


@pytest.fixture(scope="module")
def report(default_scenario) -> dict:
    return backtest(default_scenario.out_dir)  # the default: every attack type, 100 s


def test_every_attack_type_is_in_the_default_scenario(report) -> None:
    assert sorted(r["attack"] for r in report["attacks"]) == sorted(ATTACK_TYPES)


@pytest.mark.parametrize("attack", ATTACK_TYPES)
def test_detection_goals_per_attack_type(report, attack) -> None:
    (row,) = [r for r in report["attacks"] if r["attack"] == attack]
    limit_s = 10 if attack in FAST else 60
    assert row["detected"] == row["episodes"] > 0, f"{attack}: {row}"
    assert row["ttd_median_s"] < limit_s, f"{attack}: {row}"


def test_false_alerts_below_ten_per_million_benign_flows(report) -> None:
    total = report["total"]
    assert total["benign_flows"] > 1000
    assert total["false_per_million"] < 10, json.dumps(report["false"], indent=1)


def test_backtest_command_prints_a_table_and_json(tmp_path, capsys) -> None:
    from finsa.app.cli import main

    generate_scenario(tmp_path, duration_s=30, scale=0.3, attack_set="basic")
    assert main(["backtest", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["attack", "technique"] and "total" in out
    assert main(["backtest", str(tmp_path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {r["attack"] for r in data["attacks"]} <= {"port_scan", "syn_flood", "ssh_bruteforce"}
    assert main(["backtest", str(tmp_path / "missing")]) == 2
