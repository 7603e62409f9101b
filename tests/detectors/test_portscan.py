"""Port and host scans are found, with the right entity, institution, target and technique."""

from __future__ import annotations

from finsa.detectors.portscan import PortScanDetector


def run(detector, batches):
    return [a for b in batches for a in detector.process(b)]


def test_vertical_scan_amid_two_institutions_is_alerted_once(synth) -> None:
    t0 = synth.T0_MS
    batches = synth.batches(
        synth.benign(8_000, institution="bank-a", duration_ms=180_000),
        synth.benign(4_000, institution="broker-c", duration_ms=180_000, net="10.3"),
        synth.scan("10.3.100.1", range(1, 201), t0 + 60_000, institution="broker-c"),
        batch_rows=400)
    alerts = run(PortScanDetector(), batches)
    assert [(a["institution_id"], a["entity"], a["entity_kind"], a["target"], a["technique"])
            for a in alerts] == [("broker-c", synth.ATTACKER, "src_ip", "10.3.100.1", "T1046")]
    assert t0 + 60_000 <= alerts[0]["time_ms"] <= t0 + 70_100
    assert alerts[0]["severity"] >= 3


def test_fifty_ports_in_three_seconds_in_small_batches_is_caught(synth) -> None:
    batches = synth.batches(synth.scan("10.1.100.2", range(1000, 1050), synth.T0_MS, duration_ms=3_000),
                            batch_rows=7)
    alerts = run(PortScanDetector(), batches)
    assert [a["entity"] for a in alerts] == [synth.ATTACKER]


def test_same_scanner_at_two_institutions_gives_one_alert_each(synth) -> None:
    t0 = synth.T0_MS
    batches = synth.batches(synth.scan("10.1.100.1", range(1, 101), t0, institution="bank-a"),
                            synth.scan("10.2.100.1", range(1, 101), t0 + 2_000, institution="bank-b"),
                            batch_rows=50)
    alerts = run(PortScanDetector(), batches)
    assert sorted((a["institution_id"], a["entity"]) for a in alerts) == [
        ("bank-a", synth.ATTACKER), ("bank-b", synth.ATTACKER)]


def test_horizontal_sweep_targets_many(synth) -> None:
    parts = [synth.scan(f"10.1.7.{i}", [445], synth.T0_MS + i * 100, duration_ms=50) for i in range(1, 61)]
    alerts = run(PortScanDetector(), synth.batches(*parts, batch_rows=20))
    assert [(a["entity"], a["target"]) for a in alerts] == [(synth.ATTACKER, "many")]


def test_one_alert_per_window_and_again_in_the_next(synth) -> None:
    t0 = synth.T0_MS
    batches = synth.batches(synth.scan("10.1.100.1", range(1, 301), t0, duration_ms=50_000),
                            synth.scan("10.1.100.1", range(301, 601), t0 + 70_000, duration_ms=40_000),
                            batch_rows=25)
    alerts = run(PortScanDetector(window_ms=60_000), batches)
    windows = [a["time_ms"] // 60_000 for a in alerts]
    assert len(alerts) >= 2 and len(set(windows)) == len(windows)
    assert len({a["alert_id"] for a in alerts}) == len(alerts)


def test_benign_traffic_raises_no_scan_alert(synth) -> None:
    batches = synth.batches(synth.benign(20_000, duration_ms=300_000, n_clients=400),
                            synth.benign(10_000, institution="bank-b", duration_ms=300_000, net="10.2"),
                            batch_rows=1_000)
    assert run(PortScanDetector(), batches) == []


def _buffered_per_source(detector: PortScanDetector) -> dict[int, float]:
    keys = detector._buf.column("key") if len(detector._buf) else []
    out: dict[int, float] = {}
    for k in list(keys):
        out[int(k)] = out.get(int(k), 0.0) + 1.0
    return out


def test_sources_too_few_attempts_to_alert_are_not_scored_and_nothing_changes(synth, monkeypatch) -> None:
    """Scoring only the sources with enough buffered failed attempts to reach any threshold gives
    the alerts scoring every source gives; the per-source counts follow the buffer as it expires
    and overflows."""
    t0 = synth.T0_MS
    parts = [synth.benign(6_000, duration_ms=200_000, n_clients=300),
             synth.scan("10.1.100.1", range(1, 40), t0 + 20_000, duration_ms=5_000),
             synth.scan("10.1.100.2", range(1, 9), t0 + 90_000, duration_ms=2_000, attacker="203.0.113.70")]
    parts += [synth.scan(f"10.1.8.{i}", [445], t0 + 130_000 + i * 50, duration_ms=20, attacker="203.0.113.71")
              for i in range(1, 30)]
    batches = synth.batches(*parts, batch_rows=300)
    params = [{}, {"max_buffer_rows": 300}, {"min_ports": 5, "trw_min_services": 3, "theta0": 0.6, "theta1": 0.5}]
    for kwargs in params:
        fast = PortScanDetector(**kwargs)
        got = run(fast, batches)
        counts = fast._failed.as_dict()
        assert counts == _buffered_per_source(fast)
        with monkeypatch.context() as m:
            m.setattr(PortScanDetector, "_min_failed", lambda self: 0)
            assert run(PortScanDetector(**kwargs), batches) == got
    assert len(got) == 3  # the small scan too, under the low thresholds


def _expire_every_row(self: PortScanDetector, frame) -> None:
    """The former _expire: each row's institution limit first, then the bound."""
    import numpy as np

    from finsa.detectors.state import newest_rows

    for inst_h in np.unique(frame.inst_hash):
        wm = int(frame.end_ms[frame.inst_hash == inst_h].max())
        self._watermark[int(inst_h)] = max(wm, self._watermark.get(int(inst_h), wm))
    buf = self._buf
    t = buf.column("t")
    keep = t >= self._limits(buf.column("inst_h"))
    if keep.sum() > self.max_buffer_rows:
        keep = newest_rows(t, self.max_buffer_rows)
    if not keep.all():
        self._failed.add(buf.column("key")[~keep], -1.0)
        buf.keep(keep)


def test_a_full_buffer_is_cut_to_its_bound_as_after_the_per_row_limits(synth) -> None:
    """Skipping the per-row time limits when rows within every limit already pass the bound keeps
    the same rows, batch after batch, with institutions on different clocks."""
    t0 = synth.T0_MS
    parts = [synth.benign(4_000, duration_ms=200_000, n_clients=200),
             synth.benign(3_000, institution="bank-b", duration_ms=200_000, net="10.2", start_ms=t0 + 50_000),
             synth.scan("10.1.100.1", range(1, 400), t0 + 20_000, duration_ms=100_000),
             synth.scan("10.2.100.1", range(1, 300), t0 + 120_000, duration_ms=60_000, institution="bank-b")]
    batches = synth.batches(*parts, batch_rows=250)
    for bound in (150, 1_000, 200_000):
        fast, every = PortScanDetector(max_buffer_rows=bound), PortScanDetector(max_buffer_rows=bound)
        every._expire = _expire_every_row.__get__(every)  # type: ignore[method-assign]  # the former per-row expiry, patched in for the comparison
        for b in batches:
            assert fast.process(b) == every.process(b)
            assert fast._buf.column("flow_id").tolist() == every._buf.column("flow_id").tolist()
