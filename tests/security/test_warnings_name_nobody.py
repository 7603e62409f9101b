"""Finding 5: warning text named the other victims ("2 institutions hit (bank-a, sec-a)") and drift
warnings named the institution with the incident; the tenant view of warnings showed it to every
warned institution. Now a warning names the warned institution only."""

from __future__ import annotations

import json

from finsa import wire
from finsa.institutions import parse_registry
from finsa.sector.picture import SectorPicture

MIN, T0 = 60_000, 1_770_000_000_000
REGISTRY = parse_registry({"institution": [
    {"id": i, "name": i, "subsector": "bank"} for i in ("bank-a", "bank-b", "bank-c", "bank-d")]})


def _alert(inst: str, t: int, technique: str = "T1046", severity: int = 3, entity: str = "203.0.113.66") -> dict:
    return {"alert_id": f"{inst}-{t}-{technique}", "time_ms": t, "institution_id": inst, "entity": entity,
            "entity_kind": "src_ip", "technique": technique, "severity": severity, "confidence": 0.9}


def _batch(rows: list[dict]) -> wire.RecordBatch:
    return wire.ALERT.make_batch({k: [r[k] for r in rows] for k in rows[0]})


def test_no_warning_names_an_institution_but_the_one_it_warns() -> None:
    sp = SectorPicture(REGISTRY, k=2)
    sp.observe_alerts(_batch([_alert("bank-a", T0), _alert("bank-b", T0 + MIN)]))
    warnings = list(sp.tick(T0 + 2 * MIN).warnings)
    # a drift lead-up: bank-c's incident after a mix of scans and brute force; bank-d drifts toward it
    lead = [_alert("bank-c", T0 + 3 * MIN + i * 1000, t, 2, f"198.51.100.{i}")
            for i, t in enumerate(["T1110"] * 4 + ["T1078"] * 4)]
    sp.observe_alerts(_batch(lead + [_alert("bank-c", T0 + 3 * MIN + 20_000, "T1499", 5, "198.51.100.99")]))
    sp.observe_alerts(_batch([_alert("bank-d", T0 + 4 * MIN + i * 1000, t, 2, f"192.0.2.{i}")
                              for i, t in enumerate(["T1110"] * 3 + ["T1078"] * 2)]))
    warnings += sp.tick(T0 + 6 * MIN).warnings
    kinds = {w.kind for w in warnings}
    assert {"campaign_spread", "drift"} <= kinds
    for w in warnings:
        text = w.why + json.dumps(w.evidence) + json.dumps(list(w.indicators))
        others = {i.id for i in REGISTRY.institution} - {w.institution_id}
        assert not [o for o in others if o in text], (w.kind, w.why, w.evidence)
