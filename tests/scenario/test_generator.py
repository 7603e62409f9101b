"""finsa scenario: reproducible files whose ground truth agrees with the packets."""

from __future__ import annotations

import json
import socket
from collections import defaultdict
from pathlib import Path

import dpkt
import pytest

from finsa.scenario.generator import (DEFAULT_START_MS, ScenarioError, generate_scenario,
                                       load_ground_truth, load_manifest, parse_start)
from finsa.institutions import load_registry

SYN, ACK, FIN, RST = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN, dpkt.tcp.TH_RST


def read_packets(path: Path) -> list[tuple]:
    """(ts_ms, src, dst, proto, sport, dport, flags, seq, ack, payload) of every packet."""
    out = []
    with open(path, "rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.arp.ARP):  # (ts, sender address, target address, 0x0806, op, ...)
                out.append((ts * 1000, socket.inet_ntoa(ip.spa), socket.inet_ntoa(ip.tpa), 0x0806, ip.op, 0, 0, 0, 0,
                            bytes(ip.sha)))
                continue
            l4 = ip.data
            flags = l4.flags if ip.p == 6 else 0
            seq, ack = (l4.seq, l4.ack) if ip.p == 6 else (0, 0)
            out.append((ts * 1000, socket.inet_ntoa(ip.src), socket.inet_ntoa(ip.dst), ip.p,
                        l4.sport, l4.dport, flags, seq, ack, bytes(l4.data)))
    return out


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    return generate_scenario(tmp_path_factory.mktemp("scenario"), seed=7)


@pytest.fixture(scope="module")
def packets(scenario) -> dict[str, list[tuple]]:
    return {inst: read_packets(path) for inst, path in scenario.capture_paths.items()}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(scenario, tmp_path) -> None:
    again = generate_scenario(tmp_path / "again", seed=7)
    first, second = _files(scenario.out_dir), _files(again.out_dir)
    ids = ["bank-a", "bank-b", "bank-c", "ins-a", "ins-b", "ins-c", "pay-a", "pay-b", "pay-c",
           "sec-a", "sec-b", "sec-c"]  # three per subsector (k-anonymity, issue 15)
    assert sorted(first) == [f"captures/{i}.pcap" for i in ids] + [
        "detectors.toml", "ground_truth.json", "institutions.toml", "inventory.toml", "manifest.json"]
    assert first == second


def test_different_seeds_differ(scenario, tmp_path) -> None:
    other = generate_scenario(tmp_path / "other", seed=8)
    for inst, path in scenario.capture_paths.items():
        assert path.read_bytes() != other.capture_paths[inst].read_bytes()
    assert other.ground_truth != scenario.ground_truth


def test_size_and_defaults(scenario) -> None:
    manifest = load_manifest(scenario.out_dir)
    assert manifest["seed"] == 7 and manifest["duration_s"] == 100
    assert manifest["start_ms"] == DEFAULT_START_MS == parse_start("2026-03-02T09:00:00Z")
    assert 50_000 <= scenario.packets <= 110_000
    assert [c["sensor"] for c in manifest["captures"]] == [f"{i}-tap1" for i in (
        "bank-a", "bank-b", "sec-a", "ins-a", "pay-a", "bank-c", "sec-b", "sec-c", "ins-b", "ins-c", "pay-b", "pay-c")]


def test_manifest_counts_match_captures_and_times_are_in_range(scenario, packets) -> None:
    truth = load_ground_truth(scenario.out_dir)
    for cap in scenario.manifest["captures"]:
        rows = packets[cap["institution"]]
        assert len(rows) == cap["packets"] > 1000
        times = [r[0] for r in rows]
        assert times == sorted(times)
        assert truth["start_ms"] <= times[0] and times[-1] < truth["end_ms"]


def test_registry_loads_and_owns_every_capture(scenario, packets) -> None:
    registry = load_registry(scenario.registry_path)
    assert [i.subsector for i in registry.institution] == ["bank", "bank", "securities", "insurance", "payment",
                                                           "bank", "securities", "securities", "insurance",
                                                           "insurance", "payment", "payment"]
    assert all(i.latitude is not None and i.longitude is not None for i in registry.institution)
    for inst, rows in packets.items():
        assert all(inst in (registry.institution_of(r[1]), registry.institution_of(r[2])) for r in rows[::50])
    for attack in scenario.ground_truth["attacks"]:
        inside = registry.institution_of(attack["attacker"])
        assert inside == {"lateral_movement": "bank-b", "arp_spoof": "sec-a"}.get(attack["attack"])
        for victim in attack["victims"]:
            assert registry.institution_of(victim["address"]) == victim["institution"]


def _attack(scenario, kind: str) -> dict:
    (found,) = [a for a in scenario.ground_truth["attacks"] if a["attack"] == kind]
    return found


def _within(attack: dict, victim: dict, rows: list[tuple], sources: set[str]) -> list[tuple]:
    """Rows between the sources and the victim; assert they all lie in the victim's span."""
    mine = [r for r in rows if (r[1] in sources and r[2] == victim["address"])
            or (r[2] in sources and r[1] == victim["address"])]
    assert mine, victim
    assert all(victim["start_ms"] <= r[0] <= victim["end_ms"] for r in mine)
    assert attack["start_ms"] <= victim["start_ms"] <= victim["end_ms"] <= attack["end_ms"]
    return mine


def test_attacks_lie_between_ten_and_eighty_percent(scenario) -> None:
    truth = scenario.ground_truth
    assert [a["technique"] for a in truth["attacks"]] == ["T1046", "T1499.001", "T1110", "T1071.004", "T1568.002",
                                                          "T1071", "T1048", "T1021", "T1190", "T1557.002"]
    assert len({a["id"] for a in truth["attacks"]}) == 10
    for attack in truth["attacks"]:
        assert attack["start_ms"] < attack["end_ms"]
        if attack["attack"] != "beaconing":  # beaconing lasts the whole run
            assert truth["start_ms"] + 9_000 <= attack["start_ms"] < attack["end_ms"] <= truth["start_ms"] + 82_000


def test_port_scan_hits_three_institutions_in_turn(scenario, packets) -> None:
    scan = _attack(scenario, "port_scan")
    assert scan["attacker"] == "203.0.113.66"
    assert len({v["institution"] for v in scan["victims"]}) >= 3
    spans = [(v["start_ms"], v["end_ms"]) for v in scan["victims"]]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # one after another
    for victim in scan["victims"]:
        rows = _within(scan, victim, packets[victim["institution"]], {scan["attacker"]})
        syns = [r for r in rows if r[1] == scan["attacker"] and r[6] == SYN]
        answers = [r for r in rows if r[1] == victim["address"]]
        assert len({r[5] for r in syns}) >= 190
        resets = sum(1 for r in answers if r[6] == RST | ACK)
        synacks = [r for r in answers if r[6] == SYN | ACK]
        assert resets > 0.8 * len(syns) and 1 <= len(synacks) <= 3
        assert {r[4] for r in synacks} <= {22, 80, 443}
    # nothing from the scanner outside its span
    for rows in packets.values():
        assert all(scan["start_ms"] <= r[0] <= scan["end_ms"] for r in rows if scan["attacker"] in r[1:3])


def test_syn_flood_is_thousands_of_unanswered_syns_over_twenty_seconds(scenario, packets) -> None:
    flood = _attack(scenario, "syn_flood")
    (victim,) = flood["victims"]
    assert flood["attacker"] in flood["sources"]
    rows = _within(flood, victim, packets[victim["institution"]], set(flood["sources"]))
    syns = [r for r in rows if r[6] == SYN and r[5] == 443]
    assert len(syns) >= 3000
    assert 15_000 <= victim["end_ms"] - victim["start_ms"] <= 25_000
    assert not any(r[6] & ACK and not r[6] & SYN for r in rows if r[1] in flood["sources"])


def test_ssh_bruteforce_is_dozens_of_short_complete_sessions(scenario, packets) -> None:
    brute = _attack(scenario, "ssh_bruteforce")
    (victim,) = brute["victims"]
    rows = _within(brute, victim, packets[victim["institution"]], {brute["attacker"]})
    sessions = defaultdict(list)
    for r in rows:
        sessions[r[4] if r[1] == brute["attacker"] else r[5]].append(r)
    assert len(sessions) >= 24
    for session in sessions.values():
        flags = [r[6] for r in session]
        assert flags[:3] == [SYN, SYN | ACK, ACK] and FIN | ACK in flags
        assert session[0][5] == 22
        up = [r for r in session if r[1] == brute["attacker"] and r[9]]
        down = [r for r in session if r[2] == brute["attacker"] and r[9]]
        assert len(up) >= 3 and len(down) >= 3
        assert down[0][9].startswith(b"SSH-2.0-") and up[0][9].startswith(b"SSH-2.0-")
        assert session[-1][0] - session[0][0] < 10_000


def _noise(syn: tuple) -> bool:
    """A probe of the unlabeled background noise (scenario_noise), not a benign session."""
    from finsa.scenario.noise import RADIATION_PORTS

    outside = not syn[1].startswith("10.")
    return (outside and syn[5] in RADIATION_PORTS) or syn[2].endswith(".0.99")


def test_benign_tcp_sessions_have_complete_handshakes(scenario, packets) -> None:
    attackers = {a["attacker"] for a in scenario.ground_truth["attacks"]}
    attackers |= set(_attack(scenario, "syn_flood")["sources"])
    cutoff = scenario.ground_truth["end_ms"] - 5_000
    checked = 0
    for rows in packets.values():
        flows = defaultdict(list)
        for r in rows:
            if r[3] == 6 and r[1] not in attackers and r[2] not in attackers:
                flows[frozenset([(r[1], r[4]), (r[2], r[5])])].append(r)
        for flow in flows.values():
            if flow[0][6] != SYN or flow[0][0] > cutoff or _noise(flow[0]):
                continue
            syn, synack, ack = flow[:3]
            assert synack[6] == SYN | ACK and synack[8] == (syn[7] + 1) % 2**32
            assert ack[6] == ACK and ack[8] == (synack[7] + 1) % 2**32
            assert any(r[6] & FIN for r in flow) and any(r[9] for r in flow)
            checked += 1
    assert checked > 800


def test_tls_and_dns_payloads_parse(scenario, packets) -> None:
    names, queries = set(), 0
    for rows in packets.values():
        for r in rows:
            if r[3] == 6 and r[5] == 443 and r[9][:1] == b"\x16":
                hello = dpkt.ssl.TLSHandshake(dpkt.ssl.TLSRecord(r[9]).data).data
                sni = dict(hello.extensions)[0]
                names.add(sni[5:].decode())
            elif r[3] == 17 and r[5] == 53:
                query = dpkt.dns.DNS(r[9])
                assert query.qd[0].name
                queries += 1
    assert {"www.google.com", "www.northgatebank.example", "api.meridianpay.example"} <= names
    assert queries > 200


def test_checksums_are_valid_per_scapy(scenario) -> None:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether

    checked = 0
    for path in scenario.capture_paths.values():
        with open(path, "rb") as f:
            frames = [frame for k, (_, frame) in enumerate(dpkt.pcap.Reader(f)) if k % 101 == 0]
        for frame in frames:
            pkt = Ether(frame)
            if IP not in pkt:  # ARP frames carry no checksum
                continue
            l4 = pkt[TCP] if TCP in pkt else pkt[UDP]
            given = (pkt[IP].chksum, l4.chksum, pkt[IP].len)
            del pkt[IP].chksum, pkt[IP].len, l4.chksum
            if UDP in pkt:
                del pkt[UDP].len
            again = Ether(bytes(pkt))
            redone = again[TCP] if TCP in again else again[UDP]
            assert given == (again[IP].chksum, redone.chksum, again[IP].len)
            assert len(frame) >= 60
            checked += 1
    assert checked > 300


def _ones_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_every_checksum_of_a_capture_verifies(scenario) -> None:
    with open(scenario.capture_paths["bank-b"], "rb") as f:
        for _, frame in dpkt.pcap.Reader(f):
            if frame[12:14] != b"\x08\x00":  # ARP: no checksum
                continue
            ip_header = frame[14:34]
            total_length = int.from_bytes(ip_header[2:4], "big")
            segment = frame[34:14 + total_length]
            pseudo = ip_header[12:20] + bytes([0, ip_header[9]]) + len(segment).to_bytes(2, "big")
            assert _ones_sum(ip_header) == 0xFFFF
            assert _ones_sum(pseudo + segment) == 0xFFFF


def test_scale_multiplies_benign_traffic_only(tmp_path) -> None:
    import ipaddress

    from finsa.scenario.world import default_world

    attackers = [ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network(default_world().flood_net)]

    def is_attacker(address: str) -> bool:
        return any(ipaddress.ip_address(address) in net for net in attackers)

    def benign_and_attack(info) -> tuple[int, int]:
        rows = [r for path in info.capture_paths.values() for r in read_packets(path)]
        attack = sum(1 for r in rows if is_attacker(r[1]) or is_attacker(r[2]))
        return len(rows) - attack, attack

    small = benign_and_attack(generate_scenario(tmp_path / "small", duration_s=30, scale=0.5, attack_set="basic"))
    large = benign_and_attack(generate_scenario(tmp_path / "large", duration_s=30, scale=2.0, attack_set="basic"))
    assert 3 * small[0] < large[0] < 5 * small[0]
    assert abs(large[1] - small[1]) < 0.05 * small[1]


def test_start_time_moves_everything(tmp_path) -> None:
    info = generate_scenario(tmp_path, duration_s=20, start_ms=parse_start("2026-06-01T12:30:00+02:00"))
    assert info.ground_truth["start_ms"] == 1780309800000
    rows = read_packets(info.capture_paths["bank-a"])
    assert 1780309800000 <= rows[0][0] and rows[-1][0] < 1780309800000 + 20_000


def test_bad_arguments_and_missing_files_raise(tmp_path) -> None:
    with pytest.raises(ScenarioError):
        generate_scenario(tmp_path, duration_s=0)
    with pytest.raises(ScenarioError):
        parse_start("yesterday")
    with pytest.raises(ScenarioError):
        load_manifest(tmp_path / "nowhere")
    (tmp_path / "ground_truth.json").write_text(json.dumps({"seed": 1}))
    with pytest.raises(ScenarioError, match="missing"):
        load_ground_truth(tmp_path)


def test_cli_writes_a_scenario(tmp_path, capsys) -> None:
    from finsa.app.cli import main

    assert main(["scenario", "--out", str(tmp_path)]) == 0
    assert "syn_flood" in capsys.readouterr().out
    assert load_manifest(tmp_path)["duration_s"] == 100
    assert main(["scenario", "--out", str(tmp_path / "x"), "--start", "noon"]) == 2


def test_partner_traffic_is_seen_identically_by_both_taps(scenario, packets) -> None:
    def partner(rows: list[tuple]) -> list[tuple]:
        return [r for r in rows if r[2] == "198.51.100.44" or r[1] == "198.51.100.44"]

    from_bank = [r for r in partner(packets["bank-a"]) if "192.0.2.20" in r[1:3]]
    at_payer = [r for r in partner(packets["pay-a"]) if "192.0.2.20" in r[1:3]]
    assert len(from_bank) > 20 and from_bank == at_payer


def test_another_process_writes_the_same_bytes(scenario, tmp_path) -> None:
    import os
    import subprocess
    import sys

    code = f"from finsa.app.cli import main; raise SystemExit(main(['scenario', '--out', {str(tmp_path)!r}, '--seed', '7']))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    assert _files(tmp_path) == _files(scenario.out_dir)


def test_background_noise_is_sparse_failed_probes(scenario, packets) -> None:
    labeled = {a["attacker"] for a in scenario.ground_truth["attacks"]}
    for inst, rows in packets.items():
        probes = [r for r in rows if r[6] == SYN and _noise(r) and r[1] not in labeled]
        assert len(probes) >= 5, inst
        per_source = defaultdict(int)
        for r in probes:
            per_source[r[1]] += 1
        assert max(n for src, n in per_source.items() if not src.startswith("10.")) <= 3
        probed = {(r[1], r[4], r[2], r[5]) for r in probes}
        answers = [r for r in rows if (r[2], r[5], r[1], r[4]) in probed]
        assert answers and all(r[6] == RST | ACK for r in answers)
        assert len(answers) < len(probes)  # unused addresses stay silent


def test_arp_spoof_tells_the_lan_the_gateway_is_at_the_attackers_mac(scenario, packets) -> None:
    attack = _attack(scenario, "arp_spoof")
    (victim,) = attack["victims"]
    arp = [r for r in packets[victim["institution"]] if r[3] == 0x0806]
    gateway_claims = {r[9] for r in arp if r[1] == victim["address"] and r[4] == dpkt.arp.ARP_OP_REPLY}
    attacker_macs = {r[9] for r in arp if r[1] == attack["attacker"]}
    assert len(gateway_claims) == 2 and attacker_macs < gateway_claims  # the real gateway and the attacker
    spoofed = [r for r in arp if r[1] == victim["address"] and r[9] in attacker_macs]
    assert len(spoofed) >= 10 and all(victim["start_ms"] <= r[0] <= victim["end_ms"] for r in spoofed)
    elsewhere = [r for inst, rows in packets.items() if inst != victim["institution"] for r in rows if r[3] == 0x0806]
    assert elsewhere and not [r for r in elsewhere if r[1] == attack["attacker"]]  # routine ARP only


def test_attacks_none_is_benign_traffic_only(tmp_path) -> None:
    """The soak mode: background, noise and routine look-alikes, no attack actor, empty ground truth."""
    import ipaddress

    from finsa.scenario.world import default_world, ip_str

    info = generate_scenario(tmp_path, duration_s=20, attack_set="none")
    assert info.ground_truth["attacks"] == [] and info.manifest["attacks"] == "none"
    w = default_world()
    actors = {ip_str(a) for a in (w.scanner, w.bruteforcer, w.c2_beacon, w.c2_dga, w.tunnel_server, w.web_attacker,
                                  w.exfil_drop)}
    flood = ipaddress.ip_network(w.flood_net)
    for inst, path in info.capture_paths.items():
        rows = read_packets(path)
        assert rows, inst
        touched = {r[1] for r in rows} | {r[2] for r in rows}
        assert not touched & actors and not any(ipaddress.ip_address(a) in flood for a in touched), inst
