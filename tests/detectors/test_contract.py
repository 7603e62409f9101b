"""The detector contract, checked once for every registered flow detector (like river's ``checks``).

Detectors of ARP bindings (``record = "arp"``) are held to the same rules in
tests/detectors/test_arpspoof.py: determinism, pickling mid-stream, valid rows."""

from __future__ import annotations

import copy
import json
import pickle
import re

import numpy as np
import pytest

from finsa.detectors.base import Detector, DetectorParamError
from finsa.detectors.registry import DETECTORS, create, names
from finsa.wire import ALERT, FLOW, SEVERITIES

#: Small warm-ups so every detector fires within the short contract stream.
FAST = {"anomaly": {"warmup": 200, "tree_window": 50},
        "intel": {"addresses": ("192.0.2.66",), "domains": ("exfil-example.com",)}}


def make(name: str, seed: int = 0) -> Detector:
    return create(name, seed=seed, **FAST.get(name, {}))


def stream(Synth: type, seed: int = 3) -> list:
    """Two institutions of benign traffic; every kind of attack in the second half."""
    s = Synth(seed)
    T0_MS = Synth.T0_MS
    return Synth.batches(
        s.benign(12_000, institution="bank-a", duration_ms=240_000, n_clients=150),
        s.benign(6_000, institution="insurer-b", duration_ms=240_000, n_clients=80, net="10.2"),
        s.scan("10.1.100.0", range(1, 201), T0_MS + 150_000),
        s.synflood("10.2.100.0", 443, 2_000, T0_MS + 160_000, institution="insurer-b"),
        s.bruteforce("10.1.100.4", 22, 40, T0_MS + 130_000, attacker="203.0.113.70"),
        *s.hinted_attacks(T0_MS + 150_000),
        *s.flood_attacks(T0_MS + 200_000),
        batch_rows=500)


@pytest.fixture(scope="module")
def batches(synth_cls: type) -> list:
    return stream(synth_cls)


def run(detector: Detector, batches: list) -> list[dict]:
    return [a for b in batches for a in detector.process(b)]


@pytest.mark.parametrize("name", names("flow"))
def test_constructor_is_inert_and_validates(name: str) -> None:
    detector = make(name)
    assert not detector.trained
    assert detector.name == name and detector.technique
    assert repr(detector).startswith(type(detector).__name__)
    with pytest.raises(DetectorParamError):
        create(name, window_ms=-1)
    with pytest.raises(DetectorParamError):
        create(name, no_such_parameter=1)


@pytest.mark.parametrize("name", names("flow"))
def test_pickle_mid_stream_gives_the_same_later_alerts(name: str, batches: list) -> None:
    half = len(batches) // 2
    detector = make(name)
    run(detector, batches[:half])
    restored = pickle.loads(pickle.dumps(detector))
    later = run(detector, batches[half:])
    assert later, "the second half must raise alerts for this check to mean anything"
    assert run(restored, batches[half:]) == later


@pytest.mark.parametrize("name", names("flow"))
def test_clone_is_untrained_and_replays_like_new(name: str, batches: list) -> None:
    detector = make(name)
    first = run(detector, batches)
    twin = detector.clone()
    assert detector.trained and not twin.trained
    assert twin._get_params() == detector._get_params()
    assert run(twin, batches) == first


@pytest.mark.parametrize("name", names("flow"))
def test_same_seed_same_alerts(name: str, batches: list) -> None:
    assert run(make(name, seed=5), batches) == run(make(name, seed=5), batches)


@pytest.mark.parametrize("name", names("flow"))
def test_input_batch_is_not_mutated(name: str, batches: list) -> None:
    detector = make(name)
    for batch in batches[:6]:
        before = copy.deepcopy(batch.columns)
        detector.process(batch)
        for key, col in before.items():
            np.testing.assert_array_equal(batch.columns[key], col, err_msg=key)


@pytest.mark.parametrize("name", names("flow"))
def test_empty_batch_is_fine_fresh_and_mid_stream(name: str, batches: list) -> None:
    detector = make(name)
    assert detector.process(FLOW.make_batch({})) == []
    run(detector, batches[:3])
    assert detector.process(FLOW.make_batch({})) == []


@pytest.mark.parametrize("name", names("flow"))
def test_alert_rows_are_valid(name: str, batches: list) -> None:
    alerts = run(make(name), batches)
    assert alerts
    flow_ids = {int(i) for b in batches for i in b.columns["flow_id"]}
    institutions = {str(i) for b in batches for i in b.columns["institution_id"]}
    batch = ALERT.make_batch({col: [a[col] for a in alerts] for col in ALERT.names})
    assert len(batch) == len(alerts)
    for a in alerts:
        assert set(a) == set(ALERT.names)
        assert re.fullmatch(r"[0-9a-f]{32}", a["alert_id"])
        assert a["detector"] == name and a["technique"] == DETECTORS[name].technique
        assert a["institution_id"] in institutions
        assert a["severity"] in SEVERITIES
        assert 0.0 <= a["confidence"] <= 1.0 and np.isfinite(a["score"])
        assert 0 < a["first_seen_ms"] <= a["time_ms"]
        assert a["entity"] and a["entity_kind"] in ("src_ip", "dst_ip", "pair", "service", "institution")
        evidence = json.loads(a["evidence"])
        assert isinstance(evidence["features"], dict) and evidence["features"]
        assert 1 <= len(evidence["flow_ids"]) <= 10 and set(evidence["flow_ids"]) <= flow_ids
    assert len({a["alert_id"] for a in alerts}) == len(alerts)


@pytest.mark.parametrize("name", names("flow"))
def test_redelivered_batch_repeats_alert_ids(name: str, batches: list) -> None:
    """A batch processed again from the checkpoint taken before it gives the same alert ids."""
    detector = make(name)
    for batch in batches:
        checkpoint = pickle.dumps(detector)
        alerts = detector.process(batch)
        if alerts:
            again = pickle.loads(checkpoint).process(batch)
            assert [a["alert_id"] for a in again] == [a["alert_id"] for a in alerts]
            return
    pytest.fail("no alert in the stream")
