"""Synthetic registry and alerts for the sector-picture tests."""

from __future__ import annotations

from finsa import wire
from finsa.institutions import parse_registry

MIN = 60_000
T0 = 1_699_999_980_000  # a whole minute


def registry(extra: list[dict] | None = None):
    rows = [{"id": f"pay-{c}", "name": f"Pay {c}", "subsector": "payment", "region": "north" if c in "ab" else "south",
             "criticality": 3} for c in "abcde"]
    rows += [{"id": "bank-x", "name": "Bank X", "subsector": "bank", "region": "north", "criticality": 5},
             {"id": "bank-y", "name": "Bank Y", "subsector": "bank", "region": "south", "criticality": 2}]
    return parse_registry({"institution": rows + (extra or [])})


def alerts(rows: list[dict]) -> wire.RecordBatch:
    """An ALERT batch from partial rows (defaults: a T1046 scan of severity 3)."""
    full = []
    for i, r in enumerate(rows):
        base = {"alert_id": f"a-{r.get('institution_id')}-{r.get('time_ms')}-{r.get('entity')}-{i}",
                "entity_kind": "src_ip", "technique": "T1046", "detector": "portscan", "severity": 3,
                "confidence": 0.8, "target": "", "evidence": "{}", "first_seen_ms": r.get("time_ms", 0)}
        base.update(r)
        full.append(base)
    return wire.ALERT.make_batch({k: [r[k] for r in full] for k in full[0]})


def flows(institution: str, start_ms: int, count: int, spacing_ms: int = 1000) -> wire.RecordBatch:
    times = [start_ms + i * spacing_ms % MIN for i in range(count)]
    return wire.FLOW.make_batch({"institution_id": [institution] * count, "first_seen_ms": times,
                                 "last_seen_ms": times, "dst_port": [443] * count})
