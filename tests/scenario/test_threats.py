"""The scenario's C2, intrusion and routine traffic: ground truth agrees with the packets."""

from __future__ import annotations

import re
from collections import defaultdict

import dpkt
import numpy as np
import pytest

from finsa.scenario.generator import generate_scenario
from finsa.scenario.intrusions import WEB_ATTACK_URIS
from finsa.scenario.threats import TUNNEL_DOMAIN

from tests.scenario.test_generator import read_packets  # same folder helper


@pytest.fixture(scope="module")
def scenario(default_scenario):
    return default_scenario  # seed 7


@pytest.fixture(scope="module")
def packets(scenario) -> dict[str, list[tuple]]:
    return {inst: read_packets(path) for inst, path in scenario.capture_paths.items()}


_WIRE_DOMAIN = b"".join(bytes([len(p)]) + p.encode() for p in TUNNEL_DOMAIN.split("."))


def _attack(scenario, kind: str) -> dict:
    (found,) = [a for a in scenario.ground_truth["attacks"] if a["attack"] == kind]
    return found


def _of(rows: list[tuple], address: str) -> list[tuple]:
    return [r for r in rows if address in (r[1], r[2])]


def _in_span(rows: list[tuple], victim: dict) -> None:
    assert rows and all(victim["start_ms"] <= r[0] <= victim["end_ms"] for r in rows)


def _dns(rows: list[tuple], client: str) -> list[tuple[str, int, int]]:
    """(name, qtype, rcode) of every answer the client received."""
    out = []
    for r in rows:
        if r[3] == 17 and r[2] == client and r[4] == 53:
            msg = dpkt.dns.DNS(r[9])
            out.append((msg.qd[0].name, msg.qd[0].type, msg.rcode))
    return out


def test_dns_tunnel_is_txt_queries_with_long_hex_labels(scenario, packets) -> None:
    tunnel = _attack(scenario, "dns_tunnel")
    (victim,) = tunnel["victims"]
    rows = packets[victim["institution"]]
    answers = [a for a in _dns(rows, victim["address"]) if a[0].endswith(tunnel["domain"])]
    assert tunnel["domain"] == TUNNEL_DOMAIN and len(answers) >= 80
    assert all(qtype == dpkt.dns.DNS_TXT and rcode == 0 for _, qtype, rcode in answers)
    assert all(re.fullmatch(r"[0-9a-f]{62}\.[0-9a-f]+\." + re.escape(TUNNEL_DOMAIN), n) for n, _, _ in answers)
    assert len({n for n, _, _ in answers}) == len(answers)
    forwarded = [r for r in rows if r[1] == tunnel["relays"][0] and r[5] == 53 and _WIRE_DOMAIN in r[9]]
    assert len(forwarded) == len(answers)
    tunnel_rows = [r for r in _of(rows, victim["address"]) if r[3] == 17 and _WIRE_DOMAIN in r[9]]
    _in_span(tunnel_rows, victim)


def test_dga_is_many_nxdomain_then_a_controller(scenario, packets) -> None:
    dga = _attack(scenario, "dga")
    (victim,) = dga["victims"]
    rows = packets[victim["institution"]]
    answers = _dns(rows, victim["address"])
    nx = [n for n, _, rcode in answers if rcode == dpkt.dns.DNS_RCODE_NXDOMAIN]
    assert len(nx) >= 30 and len(set(nx)) == len(nx)
    assert all(re.fullmatch(r"[a-z]{10,19}\.[a-z]+", n) for n in nx)
    assert (dga["domain"], 1, 0) in answers
    c2 = _of(rows, dga["attacker"])
    assert c2 and {r[1] for r in c2} | {r[2] for r in c2} == {dga["attacker"], victim["address"]}
    _in_span(c2, victim)


def test_beaconing_is_periodic_small_tls_over_the_whole_run(scenario, packets) -> None:
    beacon = _attack(scenario, "beaconing")
    (victim,) = beacon["victims"]
    syns = [r[0] for r in _of(packets[victim["institution"]], beacon["attacker"]) if r[6] == dpkt.tcp.TH_SYN]
    gaps = np.diff(syns) / 1000
    assert len(syns) >= 8 and np.all((gaps > 8.5) & (gaps < 11.5))
    assert syns[0] - scenario.ground_truth["start_ms"] < 5_000 and scenario.ground_truth["end_ms"] - syns[-1] < 15_000
    sent = defaultdict(int)
    for r in _of(packets[victim["institution"]], beacon["attacker"]):
        sent[r[4] if r[1] == victim["address"] else r[5]] += len(r[9])
    assert len(sent) == len(syns) and max(sent.values()) < 3_000
    _in_span(_of(packets[victim["institution"]], beacon["attacker"]), victim)


def _bytes_between(rows: list[tuple], src: str, dst: str) -> int:
    return sum(len(r[9]) for r in rows if r[1] == src and r[2] == dst)


def test_exfiltration_is_a_large_upload_and_the_backup_is_larger_but_internal(scenario, packets) -> None:
    exfil = _attack(scenario, "exfiltration")
    (victim,) = exfil["victims"]
    rows = packets[victim["institution"]]
    up = _bytes_between(rows, victim["address"], exfil["attacker"])
    assert up > 10_000_000 and _bytes_between(rows, exfil["attacker"], victim["address"]) < up / 100
    _in_span(_of(rows, exfil["attacker"]), victim)
    backup = _bytes_between(packets["bank-a"], "10.1.0.21", "10.1.0.40")
    assert backup > up
    attackers = {a["attacker"] for a in scenario.ground_truth["attacks"]}
    assert not {"10.1.0.21", "10.1.0.40"} & attackers


def test_lateral_movement_reaches_many_internal_hosts_over_smb_rdp_ssh(scenario, packets) -> None:
    lateral = _attack(scenario, "lateral_movement")
    rows = packets["bank-b"]
    syns = [r for r in rows if r[1] == lateral["attacker"] and r[6] == dpkt.tcp.TH_SYN
            and r[5] in (22, 445, 3389) and lateral["start_ms"] <= r[0] <= lateral["end_ms"]]
    assert {r[5] for r in syns} == {22, 445, 3389}
    assert {r[2] for r in syns} == {v["address"] for v in lateral["victims"]} and len(syns) >= 30
    assert all(v["institution"] == "bank-b" and v["address"].startswith("10.2.") for v in lateral["victims"])
    for victim in lateral["victims"]:
        if victim["address"].startswith("10.2.0."):
            continue  # servers: the compromised workstation also uses them for its daily work
        _in_span(_of([r for r in rows if lateral["attacker"] in (r[1], r[2])], victim["address"]), victim)


def test_web_attack_uris_are_visible_on_port_80(scenario, packets) -> None:
    web = _attack(scenario, "web_attack")
    (victim,) = web["victims"]
    rows = _of(packets[victim["institution"]], web["attacker"])
    requests = [dpkt.http.Request(r[9]) for r in rows if r[5] == 80 and r[9].startswith(b"GET ")]
    assert len(requests) >= 40 and {q.uri for q in requests} == set(WEB_ATTACK_URIS)
    assert all(r[4] == 80 or r[5] == 80 for r in rows)
    _in_span(rows, victim)


def test_basic_set_is_the_three_first_attacks_only(tmp_path) -> None:
    info = generate_scenario(tmp_path, duration_s=30, scale=0.3, attack_set="basic")
    assert [a["attack"] for a in info.ground_truth["attacks"]] == ["port_scan", "syn_flood", "ssh_bruteforce"]
    assert info.manifest["attacks"] == "basic"


def test_short_runs_keep_the_ground_truth_inside_the_run(tmp_path) -> None:
    info = generate_scenario(tmp_path, duration_s=12, scale=0.2)
    truth = info.ground_truth
    for attack in truth["attacks"]:
        for victim in attack["victims"]:
            assert truth["start_ms"] <= victim["start_ms"] <= victim["end_ms"] <= truth["end_ms"]
