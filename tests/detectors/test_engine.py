"""The engine: alerts as an ALERT batch, bad rows counted and skipped, chunks, metrics, pickling."""

from __future__ import annotations

import pickle

import numpy as np

from finsa.detectors import engine as engine_mod
from finsa.detectors.base import Detector
from finsa.detectors.engine import DetectionEngine, default_detectors, valid_rows
from finsa.detectors.portscan import PortScanDetector
from finsa.metrics import REGISTRY
from finsa.wire import ALERT, FLOW, RecordBatch, decode_batch, encode_batch


def scenario(synth) -> list[RecordBatch]:
    t0 = synth.T0_MS
    return synth.batches(
        synth.benign(8_000, duration_ms=120_000), synth.benign(4_000, institution="bank-b", net="10.2"),
        synth.scan("10.1.100.0", range(1, 201), t0 + 20_000),
        synth.synflood("10.2.100.0", 443, 3_000, t0 + 40_000, institution="bank-b"),
        synth.bruteforce("10.1.100.4", 22, 25, t0 + 30_000, attacker="198.51.100.23"),
        batch_rows=2_000)


def test_engine_finds_every_attack_and_returns_alert_batches(synth) -> None:
    engine = DetectionEngine()
    assert [d.name for d in engine.detectors] == [d.name for d in default_detectors()]
    before = REGISTRY.get("finsa_detector_alerts_total").value(detector="portscan")
    out = [engine.process(b) for b in scenario(synth)]
    assert all(b.type is ALERT for b in out)
    rows = [r for b in out for r in decode_batch(encode_batch(b), expect=ALERT).rows()]
    found = {(r["detector"], r["institution_id"], r["entity"], r["technique"]) for r in rows}
    assert ("portscan", "bank-a", synth.ATTACKER, "T1046") in found
    assert ("synflood", "bank-b", "10.2.100.0", "T1499.001") in found
    assert ("bruteforce", "bank-a", "198.51.100.23", "T1110") in found
    assert REGISTRY.get("finsa_detector_alerts_total").value(detector="portscan") == before + 1


def test_alert_batch_id_follows_the_flow_batch_id(synth) -> None:
    batch = scenario(synth)[0]
    assert DetectionEngine().process(batch).batch_id == DetectionEngine().process(batch).batch_id


def test_empty_batch_gives_an_empty_alert_batch() -> None:
    out = DetectionEngine().process(FLOW.make_batch({}))
    assert out.type is ALERT and len(out) == 0
    assert len(decode_batch(encode_batch(out))) == 0


def test_bad_rows_are_counted_and_skipped(synth) -> None:
    good = FLOW.make_batch(synth.scan("10.1.100.0", range(1, 101), synth.T0_MS))
    cols = {k: v.copy() for k, v in good.columns.items()}
    n = len(good)
    cols["first_seen_ms"] = cols["first_seen_ms"].astype(np.float64)
    cols["first_seen_ms"][0] = np.nan
    cols["institution_id"][1] = ""
    cols["last_seen_ms"][2] = cols["first_seen_ms"][2] - 5
    cols["src2dst_packets"][3] = 0
    cols["src_ip"][4] = 0
    cols["first_seen_ms"][5] = -7_000  # before 1970
    skipped = REGISTRY.get("finsa_detector_rows_skipped_total")
    before = {r: skipped.value(reason=r) for r in ("not_finite", "no_institution", "bad_time", "bad_counts", "no_address")}
    hostile = RecordBatch(FLOW, cols)
    clean, counts = valid_rows(hostile)
    assert len(clean) == n - 6 and counts == {"not_finite": 1, "no_institution": 1, "bad_time": 2,
                                               "bad_counts": 1, "no_address": 1}
    engine = DetectionEngine()
    out = engine.process(hostile)
    assert [r["entity"] for r in out.rows()] == [synth.ATTACKER]
    assert skipped.value(reason="bad_time") == before["bad_time"] + 2
    assert engine.skipped == counts  # per engine too: what finsa detect and finsa eval print


def test_flow_times_from_1970_are_taken(synth) -> None:
    """Lab captures rebased to the epoch, devices with unset clocks: detected, nothing refused."""
    old = FLOW.make_batch(synth.scan("10.1.100.0", range(1, 101), 326))
    engine = DetectionEngine()
    out = engine.process(old)
    assert [(r["detector"], r["entity"]) for r in out.rows()] == [("portscan", synth.ATTACKER)]
    assert engine.skipped == {}


def test_huge_batch_is_cut_into_chunks(synth, monkeypatch) -> None:
    monkeypatch.setattr(engine_mod, "MAX_CHUNK_ROWS", 300)
    whole = synth.batches(synth.benign(3_000, duration_ms=60_000),
                          synth.scan("10.1.100.0", range(1, 201), synth.T0_MS + 10_000), batch_rows=10**6)
    assert len(whole) == 1
    out = DetectionEngine().process(whole[0])
    assert [(r["detector"], r["entity"]) for r in out.rows()] == [("portscan", synth.ATTACKER)]


class Broken(Detector):
    name = "broken"
    technique = "none"

    def process(self, flows):
        raise RuntimeError("bug")


def test_a_failing_detector_is_counted_and_the_others_still_run(synth) -> None:
    errors = REGISTRY.get("finsa_detector_errors_total")
    before = errors.value(detector="broken")
    engine = DetectionEngine([Broken(), PortScanDetector()])
    out = engine.process(FLOW.make_batch(synth.scan("10.1.100.0", range(1, 101), synth.T0_MS)))
    assert len(out) == 1 and errors.value(detector="broken") == before + 1


def test_engine_pickles_mid_stream(synth) -> None:
    batches = scenario(synth)
    engine = DetectionEngine()
    engine.process(batches[0])
    restored = pickle.loads(pickle.dumps(engine))
    rest_a = [engine.process(b).rows() for b in batches[1:]]
    rest_b = [restored.process(b).rows() for b in batches[1:]]
    assert rest_a == rest_b and any(rest_a)


def test_a_batch_spanning_minutes_is_detected_like_the_same_flows_arriving_live() -> None:
    """A scan at the start of a batch covering 3 minutes is not pushed out of the window by the
    batch's newest flows before it is scored (a worker catching up after an outage)."""
    import numpy as np

    from finsa import wire
    from finsa.detectors.engine import DetectionEngine, time_slices

    start, n_scan, n_late = 1_770_000_000_000, 60, 50
    t = np.concatenate([start + np.arange(n_scan) * 10, start + 180_000 + np.arange(n_late)])
    n = n_scan + n_late
    flows = wire.FLOW.make_batch({
        "flow_id": np.arange(n) + 1, "first_seen_ms": t, "last_seen_ms": t + 1,
        "institution_id": ["bank-a"] * n, "ip_version": [4] * n, "protocol": [6] * n,
        "src_ip": ["203.0.113.9"] * n_scan + ["10.0.0.5"] * n_late,
        "dst_ip": ["198.51.100.7"] * n, "src_port": [40000] * n,
        "dst_port": np.concatenate([np.arange(1, n_scan + 1), np.full(n_late, 443)]),
        "src2dst_packets": [1] * n_scan + [5] * n_late, "dst2src_packets": [1] * n_scan + [5] * n_late,
        "src2dst_bytes": [60] * n_scan + [900] * n_late, "dst2src_bytes": [54] * n_scan + [4000] * n_late,
        "src2dst_tcp_flags": [0x02] * n_scan + [0x1B] * n_late, "dst2src_tcp_flags": [0x14] * n_scan + [0x1B] * n_late,
    })
    assert len(time_slices(flows, flows.batch_id)) == 2
    alerts = DetectionEngine().process(flows).rows()
    assert ("203.0.113.9", "T1046") in {(a["entity"], a["technique"]) for a in alerts}
