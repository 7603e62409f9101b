"""The engine built from a config: overrides per subsector and institution, allowlist, reconfigure."""

from __future__ import annotations

import pickle
import tomllib

import numpy as np

from finsa.detectors.config import default_config, parse_detectors_config
from finsa.detectors.engine import DetectionEngine
from finsa.detectors.registry import DEFAULT_NAMES
from finsa.metrics import REGISTRY
from finsa.institutions import parse_registry
from finsa.wire import FLOW, RecordBatch

REGISTRY_FILE = parse_registry({"institution": [
    {"id": "bank-a", "name": "Alpine Bank", "subsector": "bank"},
    {"id": "pay-b", "name": "Pay B", "subsector": "payment"},
    {"id": "pay-c", "name": "Pay C", "subsector": "payment"}]})
PAYMENT_LOW = """
    [overrides.subsector.payment.portscan]
    min_ports = 5
"""


def cfg(text: str = ""):
    return parse_detectors_config(tomllib.loads(text))


def alerts(engine: DetectionEngine, batches: list[RecordBatch]) -> set[tuple[str, str, str]]:
    return {(r["detector"], r["institution_id"], r["entity"]) for b in batches for r in engine.process(b).rows()}


def small_scans(synth, *institutions: str) -> list[RecordBatch]:
    """An 8-port scan at each institution: below the default min_ports (20) and the TRW's 10 services."""
    parts = [synth.scan(f"10.{i}.100.1", range(1000, 1008), synth.T0_MS + 1_000 * i, institution=inst,
                        attacker=f"203.0.113.{60 + i}") for i, inst in enumerate(institutions, 1)]
    return synth.batches(*parts)


def test_an_empty_config_runs_like_the_default_engine(synth) -> None:
    batches = synth.batches(synth.benign(3_000, duration_ms=60_000),
                            synth.scan("10.1.100.0", range(1, 101), synth.T0_MS + 5_000),
                            synth.bruteforce("10.1.100.4", 22, 25, synth.T0_MS + 10_000, attacker="198.51.100.23"))
    configured = DetectionEngine.from_config(default_config())
    assert [d.name for d in configured.detectors] == [d.name for d in DetectionEngine().detectors]
    plain = DetectionEngine()
    assert [configured.process(b).rows() for b in batches] == [plain.process(b).rows() for b in batches]


def test_subsector_override_catches_a_smaller_scan_at_payment_institutions_only(synth) -> None:
    batches = small_scans(synth, "bank-a", "pay-b")
    assert alerts(DetectionEngine.from_config(cfg()), batches) == set()
    engine = DetectionEngine.from_config(cfg(PAYMENT_LOW), REGISTRY_FILE)
    assert alerts(engine, batches) == {("portscan", "pay-b", "203.0.113.62")}
    assert engine.instance_for("portscan", "pay-b").min_ports == 5
    assert engine.instance_for("portscan", "bank-a").min_ports == 20
    assert engine.instance_for("portscan", "pay-b") is engine.instance_for("portscan", "pay-c")


def test_without_a_registry_only_institution_overrides_apply(synth) -> None:
    batches = small_scans(synth, "bank-a", "pay-b", "pay-c")
    text = PAYMENT_LOW + "\n[overrides.institution.bank-a.portscan]\nmin_ports = 6\n"
    assert alerts(DetectionEngine.from_config(cfg(text)), batches) == {("portscan", "bank-a", "203.0.113.61")}


def test_institution_override_wins_over_its_subsector(synth) -> None:
    text = PAYMENT_LOW + "\n[overrides.institution.pay-c.portscan]\nmin_ports = 50\n"
    engine = DetectionEngine.from_config(cfg(text), REGISTRY_FILE)
    assert alerts(engine, small_scans(synth, "bank-a", "pay-b", "pay-c")) == {("portscan", "pay-b", "203.0.113.62")}


def test_a_detector_disabled_for_an_institution_never_sees_its_rows(synth) -> None:
    batches = synth.batches(synth.scan("10.1.100.1", range(1, 101), synth.T0_MS, institution="bank-a"),
                            synth.scan("10.2.100.1", range(1, 101), synth.T0_MS, institution="pay-b",
                                       attacker="203.0.113.99"))
    engine = DetectionEngine.from_config(cfg("[overrides.institution.bank-a.portscan]\nenabled = false\n"))
    assert alerts(engine, batches) == {("portscan", "pay-b", "203.0.113.99")}
    assert engine.instance_for("portscan", "bank-a") is None
    # and the other way round: off everywhere, on for one subsector
    text = "[detectors.portscan]\nenabled = false\n[overrides.subsector.payment.portscan]\nenabled = true\n"
    engine = DetectionEngine.from_config(cfg(text), REGISTRY_FILE)
    assert alerts(engine, batches) == {("portscan", "pay-b", "203.0.113.99")}


def allowlisted(expires: str, institutions: str = '["bank-a"]') -> str:
    return f"""
        [[allowlist]]
        entity = "203.0.113.0/24"
        detectors = ["portscan"]
        institutions = {institutions}
        reason = "weekly vulnerability scan"
        expires = {expires}
    """


def test_allowlist_suppresses_and_counts_until_it_expires(synth) -> None:
    scan = synth.batches(synth.scan("10.1.100.1", range(1, 101), synth.T0_MS))  # June 2025
    suppressed = REGISTRY.get("finsa_detector_alerts_suppressed_total")
    before = suppressed.value(detector="portscan")
    assert alerts(DetectionEngine.from_config(cfg(allowlisted("2027-01-01T00:00:00Z"))), scan) == set()
    assert suppressed.value(detector="portscan") == before + 1
    expected = {("portscan", "bank-a", synth.ATTACKER)}
    assert alerts(DetectionEngine.from_config(cfg(allowlisted("2025-01-01T00:00:00Z"))), scan) == expected
    other = allowlisted("2027-01-01T00:00:00Z", '["bank-z"]')
    assert alerts(DetectionEngine.from_config(cfg(other)), scan) == expected
    assert suppressed.value(detector="portscan") == before + 1


def halves(synth) -> tuple[RecordBatch, RecordBatch]:
    """A 30-port scan in two batches of 15: only a detector that remembers the first half alerts."""
    first = FLOW.make_batch(synth.scan("10.1.100.1", range(1000, 1015), synth.T0_MS, duration_ms=2_000))
    second = FLOW.make_batch(synth.scan("10.1.100.1", range(1015, 1030), synth.T0_MS + 3_000, duration_ms=2_000))
    return first, second


NO_TRW = "[detectors.portscan]\ntrw_min_services = 65536\n"


def test_reconfigure_keeps_the_state_of_unchanged_detectors(synth) -> None:
    first, second = halves(synth)
    engine = DetectionEngine.from_config(cfg(NO_TRW), REGISTRY_FILE)
    assert len(engine.process(first)) == 0
    portscan = engine.instance_for("portscan", "bank-a")
    assert portscan.trained
    summary = engine.reconfigure(cfg(NO_TRW + "[detectors.synflood]\nk_sigma = 8.0\n"))
    enabled = len(DEFAULT_NAMES)
    assert summary == {"kept": enabled - 1, "new": 1, "dropped": 1}
    assert engine.instance_for("portscan", "bank-a") is portscan
    assert engine.instance_for("synflood", "bank-a").k_sigma == 8.0
    assert engine.registry is REGISTRY_FILE  # None keeps the registry
    assert [r["entity"] for r in engine.process(second).rows()] == [synth.ATTACKER]


def test_reconfigure_starts_afresh_a_detector_whose_parameters_changed(synth) -> None:
    first, second = halves(synth)
    engine = DetectionEngine.from_config(cfg(NO_TRW))
    engine.process(first)
    engine.reconfigure(cfg(NO_TRW + "min_hosts = 30\n"))
    assert not engine.instance_for("portscan", "bank-a").trained
    assert len(engine.process(second)) == 0


def test_a_plain_engine_can_be_reconfigured_keeping_its_state(synth) -> None:
    first, second = halves(synth)
    engine = DetectionEngine()
    before = engine.detectors
    engine.process(first)
    assert engine.reconfigure(default_config()) == {"kept": len(before), "new": 0, "dropped": 0}
    assert len(engine.detectors) == len(before) and all(a is b for a, b in zip(engine.detectors, before))


def test_an_overridden_engine_pickles_with_its_shared_instances(synth) -> None:
    batches = small_scans(synth, "bank-a", "pay-b", "pay-c")
    engine = DetectionEngine.from_config(cfg(PAYMENT_LOW), REGISTRY_FILE)
    engine.process(batches[0])
    restored = pickle.loads(pickle.dumps(engine))
    assert restored.instance_for("portscan", "pay-b") is restored.instance_for("portscan", "pay-c")
    assert restored.config == engine.config


def test_rows_reach_exactly_their_institutions_instance(synth) -> None:
    text = PAYMENT_LOW + "\n[overrides.institution.bank-a.portscan]\nenabled = false\n"
    engine = DetectionEngine.from_config(cfg(text), REGISTRY_FILE)
    seen: dict[int, list[str]] = {}
    for detector in engine.detectors:
        if detector.name == "portscan":
            original = detector.process

            def spy(flows, original=original, key=id(detector)):  # noqa: B008 - binds this detector's id now
                seen.setdefault(key, []).extend(np.unique(flows.columns["institution_id"]).tolist())
                return original(flows)
            detector.process = spy
    engine.process(small_scans(synth, "bank-a", "pay-b", "pay-c", "bank-d")[0])
    default, payment = (id(engine.instance_for("portscan", i)) for i in ("bank-d", "pay-b"))
    assert sorted(seen[default]) == ["bank-d"] and sorted(seen[payment]) == ["pay-b", "pay-c"]
