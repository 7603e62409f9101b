"""Admin fan-out, new admin pairs after learning and PsExec-like SMB are lateral movement."""

from __future__ import annotations

import json

from finsa.detectors.lateral import LateralMovementDetector


def run(detector, batches):
    return [a for b in batches for a in detector.process(b)]


def findings(alert) -> list:
    return json.loads(alert["evidence"])["features"]["findings"]


def test_admin_fanout_amid_benign_is_alerted(synth) -> None:
    t0 = synth.T0_MS
    batches = synth.batches(synth.benign_hinted(20_000, duration_ms=300_000),
                            synth.lateral("10.1.1.81", [f"10.1.50.{i}" for i in range(1, 16)], t0 + 60_000, port=3389),
                            batch_rows=500)
    alerts = run(LateralMovementDetector(), batches)
    assert [(a["entity"], a["target"], a["technique"], findings(a)) for a in alerts] == [
        ("10.1.1.81", "many", "T1021", ["admin_fanout"])]


def test_psexec_like_smb_to_three_hosts_is_alerted_with_its_subtechnique(synth) -> None:
    cols = synth.lateral("10.1.1.81", ["10.1.50.1", "10.1.50.2", "10.1.50.3"], synth.T0_MS, psexec=True)
    alerts = run(LateralMovementDetector(), synth.batches(cols, batch_rows=2))
    assert [(a["entity"], findings(a), a["severity"]) for a in alerts] == [("10.1.1.81", ["smb_remote_service"], 4)]
    assert json.loads(alerts[0]["evidence"])["features"]["subtechnique"] == "T1021.002/T1569.002"


def test_bulk_smb_without_a_probe_first_is_file_sharing(synth) -> None:
    cols = synth.lateral("10.1.1.81", ["10.1.50.1", "10.1.50.2", "10.1.50.3"], synth.T0_MS, psexec=True)
    cols = {k: v[1::2] if hasattr(v, "__getitem__") and len(v) == 6 else v for k, v in cols.items()}
    assert run(LateralMovementDetector(), synth.batches(cols)) == []


def test_new_admin_pairs_after_learning_are_alerted(synth) -> None:
    t0 = synth.T0_MS
    detector = LateralMovementDetector(learn_ms=200_000)
    learning = synth.benign_hinted(20_000, duration_ms=400_000)
    new = synth.lateral("10.1.1.20", ["10.1.60.1", "10.1.60.2", "10.1.60.3"], t0 + 300_000, port=22)
    alerts = run(detector, synth.batches(learning, new, batch_rows=500))
    assert [(a["entity"], findings(a)) for a in alerts] == [("10.1.1.20", ["new_admin_pairs"])]


def test_the_same_pairs_during_learning_are_not_new(synth) -> None:
    detector = LateralMovementDetector(learn_ms=200_000)
    early = synth.lateral("10.1.1.20", ["10.1.60.1", "10.1.60.2", "10.1.60.3"], synth.T0_MS, port=22)
    late = synth.lateral("10.1.1.20", ["10.1.60.1", "10.1.60.2", "10.1.60.3"], synth.T0_MS + 300_000, port=22)
    assert run(detector, synth.batches(early, late)) == []


def test_external_sources_and_allowed_jump_hosts_are_skipped(synth) -> None:
    hosts = [f"10.1.50.{i}" for i in range(1, 16)]
    outside = synth.lateral("203.0.113.5", hosts, synth.T0_MS)
    jump = synth.lateral("10.1.1.250", hosts, synth.T0_MS)
    assert run(LateralMovementDetector(allow_sources=("10.1.1.250",)), synth.batches(outside, jump)) == []


def test_benign_traffic_gives_no_alert(synth) -> None:
    batches = synth.batches(synth.benign_hinted(40_000, duration_ms=900_000, n_clients=300),
                            synth.benign(20_000, duration_ms=900_000), batch_rows=1_000)
    assert run(LateralMovementDetector(learn_ms=300_000), batches) == []
