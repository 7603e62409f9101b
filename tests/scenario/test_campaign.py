"""finsa scenario --attacks sector: one actor works through the payment institutions in turn,
and the ground truth's campaign agrees with the packets."""

from __future__ import annotations

import json

import pytest

from finsa.scenario.generator import ATTACK_SETS, generate_scenario, load_ground_truth, load_manifest
from finsa.scenario.campaign import BRUTE_MAX_S, SCAN_MAX_S, visit_windows
from finsa.institutions import load_registry
from tests.scenario.test_generator import ACK, RST, SYN, read_packets

ACTOR = "203.0.113.30"
PAYMENT = {"pay-a", "pay-b", "pay-c", "pay-d", "pay-e"}


@pytest.fixture(scope="module")
def hour(sector_scenario):
    """The default sector scenario: an hour, benign scale 0.05."""
    return sector_scenario


def test_sector_set_defaults_to_an_hour_with_fourteen_institutions(hour) -> None:
    assert "sector" in ATTACK_SETS
    manifest = load_manifest(hour.out_dir)
    assert (manifest["duration_s"], manifest["scale"], manifest["attacks"]) == (3600, 0.05, "sector")
    registry = load_registry(hour.registry_path)
    payment = [i.id for i in registry.institution if i.subsector == "payment"]
    assert sorted(payment) == sorted(PAYMENT) and len(registry.institution) == 14  # three per subsector + 2
    assert sorted(hour.capture_paths) == sorted(i.id for i in registry.institution)
    assert 'allow_destinations = ["198.19.255.53/32"]' in (hour.out_dir / "detectors.toml").read_text()


def test_campaign_visits_every_payment_institution_one_after_another(hour) -> None:
    truth = load_ground_truth(hour.out_dir)
    (campaign,) = truth["campaigns"]
    assert (campaign["id"], campaign["actor"], campaign["subsector"]) == ("campaign-1", ACTOR, "payment")
    victims = campaign["victims"]
    assert {v["institution"] for v in victims} == PAYMENT
    spans = [(v["start_ms"], v["end_ms"]) for v in victims]
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))  # one after another, in list order
    gaps_min = [(b[0] - a[0]) / 60_000 for a, b in zip(spans, spans[1:])]
    assert all(9 < g < 13 for g in gaps_min), gaps_min
    assert 40 <= (campaign["end_ms"] - campaign["start_ms"]) / 60_000 <= 60  # about an hour
    assert campaign["start_ms"] == spans[0][0] and campaign["end_ms"] == spans[-1][1]
    attacks = {a["id"]: a for a in truth["attacks"]}
    assert sorted(campaign["attacks"]) == sorted(attacks) == ["port_scan-1", "ssh_bruteforce-2"]
    for attack in attacks.values():
        assert attack["campaign"] == "campaign-1" and attack["attacker"] == ACTOR
        order = list(dict.fromkeys(v["institution"] for v in attack["victims"]))
        assert order == [v["institution"] for v in victims]


def test_each_visit_is_a_scan_then_a_brute_force_in_the_victims_span(hour) -> None:
    truth = load_ground_truth(hour.out_dir)
    (campaign,) = truth["campaigns"]
    scan, brute = truth["attacks"]
    for victim in campaign["victims"]:
        inst = victim["institution"]
        rows = [r for r in read_packets(hour.capture_paths[inst]) if ACTOR in r[1:3]]
        assert rows and all(victim["start_ms"] <= r[0] <= victim["end_ms"] for r in rows)
        scanned = [v for v in scan["victims"] if v["institution"] == inst]
        (forced,) = [v for v in brute["victims"] if v["institution"] == inst]
        assert len(scanned) == 2 and max(v["end_ms"] for v in scanned) < forced["start_ms"]
        for host in scanned:
            ports = {r[5] for r in rows if r[1] == ACTOR and r[2] == host["address"] and r[6] == SYN
                     and r[0] <= host["end_ms"]}
            assert len(ports) >= 190, host
        resets = [r for r in rows if r[2] == ACTOR and r[6] == RST | ACK]
        assert len(resets) >= 150
        ssh = {r[4] for r in rows if r[1] == ACTOR and r[2] == forced["address"] and r[5] == 22 and r[6] == SYN}
        assert len(ssh) >= 30  # dozens of SSH sessions (and one probe of port 22 by the scan)
        assert (forced["end_ms"] - forced["start_ms"]) / 1000 <= BRUTE_MAX_S


def test_visits_keep_their_pace_in_short_and_long_runs() -> None:
    for duration_s in (300.0, 3600.0, 7200.0):
        windows = visit_windows(0, duration_s, 5)
        for scan_lo, scan_hi, brute_lo, brute_hi in windows:
            assert scan_lo < scan_hi < brute_lo < brute_hi
            assert (scan_hi - scan_lo) / 1e9 <= SCAN_MAX_S and (brute_hi - brute_lo) / 1e9 <= BRUTE_MAX_S
        assert windows[-1][3] <= 0.95 * duration_s * 1e9
        assert all(a[3] < b[0] for a, b in zip(windows, windows[1:]))


def test_short_sector_run_is_deterministic_and_other_sets_have_no_campaigns(tmp_path) -> None:
    one = generate_scenario(tmp_path / "one", duration_s=300, scale=0.02, attack_set="sector")
    two = generate_scenario(tmp_path / "two", duration_s=300, scale=0.02, attack_set="sector")
    assert one.ground_truth == two.ground_truth
    for inst, path in one.capture_paths.items():
        assert path.read_bytes() == two.capture_paths[inst].read_bytes()
    assert len(one.ground_truth["campaigns"][0]["victims"]) == 5
    basic = generate_scenario(tmp_path / "basic", duration_s=20, scale=0.1, attack_set="basic")
    assert "campaigns" not in basic.ground_truth and len(basic.capture_paths) == 12


def test_cli_writes_the_sector_campaign(tmp_path, capsys) -> None:
    from finsa.app.cli import main

    assert main(["scenario", "--out", str(tmp_path), "--attacks", "sector", "--duration", "240",
                 "--scale", "0.02"]) == 0
    out = capsys.readouterr().out
    assert "campaign-1" in out and ACTOR in out and "pay-e-tap1" in out
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    assert load_manifest(tmp_path)["duration_s"] == 240 and truth["campaigns"][0]["subsector"] == "payment"
