"""Analyst feedback changes detection: a replayed scan raises alerts; once an analyst's
false-positive verdict is accepted by the operator, the same scanner no longer alerts while
another scanner in the same traffic still does (no missed episode)."""

from __future__ import annotations

import json

import numpy as np

from finsa.dashboards.soc.triage import triage_alert
from finsa.dashboards.users import User, hash_password
from finsa.detectors.engine import DetectionEngine
from finsa.storage.backend import open_store
from finsa.storage.triage import Actor, TriageLog
from finsa.streams.feedback import FeedbackPoller, entries_of
from finsa.wire import FLOW

T0_MS = 1_780_000_000_000
SCANNER, OTHER = "198.51.100.7", "203.0.113.50"
ANA = User(username="ana", role="institution", institution="bank-a", password_hash=hash_password("x", n=2**10))


def _scan(start_ms: int, flow_base: int) -> FLOW:
    """Two sources each probe 40 closed ports of one bank host within a few seconds."""
    n = 40
    src = [SCANNER] * n + [OTHER] * n
    first = start_ms + np.arange(2 * n) * 50
    return FLOW.make_batch({
        "flow_id": flow_base + np.arange(2 * n), "first_seen_ms": first, "last_seen_ms": first + 10,
        "institution_id": "bank-a", "sensor_id": "s1", "ip_version": 4, "protocol": 6,
        "src_ip": src, "dst_ip": ["10.1.0.20"] * (2 * n), "src_port": 50000 + np.arange(2 * n) % 1000,
        "dst_port": np.tile(1000 + np.arange(n), 2), "src2dst_packets": 1, "src2dst_bytes": 60,
        "dst2src_packets": 1, "dst2src_bytes": 40, "src2dst_tcp_flags": 2, "dst2src_tcp_flags": 20, "end_reason": 3})


def _entities(alerts) -> set[str]:
    return {r["entity"] for r in alerts.rows() if r["detector"] == "portscan"}


def test_an_accepted_false_positive_stops_the_alerts_and_nothing_else():
    store = open_store()
    try:
        store.migrate()
        engine = DetectionEngine()
        poller = FeedbackPoller(store, engine)
        first = engine.process(_scan(T0_MS, 0))
        assert _entities(first) == {SCANNER, OTHER}
        store.insert(first)
        alert = next(r for r in first.rows() if r["entity"] == SCANNER and r["detector"] == "portscan")
        log = TriageLog(store)
        result = triage_alert(log, ANA, alert, {"state": "closed", "verdict": "false_positive",
                                                "note": "our vulnerability scanner", "expiry_days": 30}, T0_MS)
        assert poller.poll() == 0  # proposed, not accepted yet: still alerts
        assert _entities(engine.process(_scan(T0_MS + 600_000, 1000))) == {SCANNER, OTHER}
        log.decide_entry(Actor("otto", "operator", "operator"), result["proposed"]["entry_id"], True)
        assert poller.poll() == 1
        later = engine.process(_scan(T0_MS + 1_200_000, 2000))
        assert _entities(later) == {OTHER}
        after_expiry = engine.process(_scan(T0_MS + 31 * 86_400_000, 3000))
        assert _entities(after_expiry) == {SCANNER, OTHER}
    finally:
        store.close()


def test_invalid_stored_entries_are_skipped():
    rows = [{"entity": "not-an-address", "detector": "portscan", "institution_id": "bank-a", "reason": "x",
             "expires_ms": T0_MS},
            {"entity": "10.0.0.1", "detector": "no-such-detector", "institution_id": "bank-a", "reason": "x",
             "expires_ms": T0_MS},
            {"entity": "10.0.0.1", "detector": "portscan", "institution_id": "bank-a", "reason": "x",
             "expires_ms": T0_MS}]
    assert [e.entity for e in entries_of(rows)] == ["10.0.0.1"]


def test_the_operator_accepts_with_the_command(tmp_path, capsys):
    from finsa.app.cli import main

    store = open_store(data_dir=tmp_path)
    store.migrate()
    entry = TriageLog(store).propose_entry(Actor("ana", "institution", "bank-a"), entity="10.1.0.9", detector="portscan",
                                           institution_id="bank-a", reason="scanner", expires_ms=T0_MS)
    store.close()
    assert main(["allowlist", "--data-dir", str(tmp_path), "list", "--status", "proposed"]) == 0
    assert entry["entry_id"] in capsys.readouterr().out
    assert main(["allowlist", "--data-dir", str(tmp_path), "accept", entry["entry_id"]]) == 0
    assert main(["allowlist", "--data-dir", str(tmp_path), "accept", "nope"]) == 1
    store = open_store(data_dir=tmp_path)
    try:
        assert TriageLog(store).entry(entry["entry_id"])["status"] == "accepted"
        assert store.query("SELECT principal, action FROM audit_log WHERE action = 'allowlist' ORDER BY time").rows == [
            ("bank-a", "allowlist"), ("operator", "allowlist")]
    finally:
        store.close()


def test_a_false_positive_verdict_reaches_the_anomaly_detector():
    """The anomaly detector never learns a vector it flagged; the analyst's false-positive verdict
    makes its institution's model learn it, through the store, the poller and the engine."""
    from finsa.detectors.anomaly import AnomalyDetector
    from finsa.wire import ALERT

    store = open_store()
    try:
        store.migrate()
        detector = AnomalyDetector(warmup=10, min_flows=1)
        engine = DetectionEngine([detector])
        engine.process(_scan(T0_MS, 0))  # builds bank-a's model
        model = detector._models["bank-a"]
        before = model.learned
        features = {"flows": 40, "distinct_dsts": 1, "distinct_ports": 40, "failed_ratio": 0.9, "syn_only_ratio": 0.9,
                    "bytes_per_flow": 100, "packets_per_flow": 2, "rate_1s": 5, "rate_60s": 40}
        evidence = json.dumps({"features": features, "flow_ids": []})
        store.insert(ALERT.make_batch({"alert_id": ["an-1"], "time_ms": [T0_MS], "institution_id": ["bank-a"],
                                       "entity": [SCANNER], "detector": ["anomaly"], "severity": [3],
                                       "evidence": [evidence]}))
        poller = FeedbackPoller(store, engine)
        poller.verdicts_since_ms = 0
        triage_alert(TriageLog(store), ANA, {"alert_id": "an-1", "institution_id": "bank-a", "entity": SCANNER,
                                             "detector": "anomaly"},
                     {"state": "closed", "verdict": "false_positive", "note": "backup", "propose_allowlist": False},
                     T0_MS)
        poller.poll()
        engine.process(FLOW.make_batch({}))  # verdicts are learned in the processing thread, at a batch
        assert model.learned == before + 1
        poller.poll()  # once: the same verdict is not learned again
        engine.process(FLOW.make_batch({}))
        assert model.learned == before + 1
    finally:
        store.close()
