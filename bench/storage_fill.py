"""Synthetic rows for the tables later pipeline stages fill, so every panel's query does real work.

The storage benchmark loads flows and alerts at scale; the sector tables (campaigns, warnings,
threat levels, emergencies), heartbeats and institutions get a few hundred plausible rows each
over the same day, written through ``Store.insert`` (wire batches) like the pipeline writes them.

>>> sorted(sector_batches(10))
['campaigns', 'emergencies', 'heartbeats', 'threat_levels', 'warnings']
"""

from __future__ import annotations

import numpy as np

from bench.flows import INSTITUTIONS, START_MS
from finsa.wire import CAMPAIGN, EMERGENCY, HEARTBEAT, LEVEL, WARNING, RecordBatch

__all__ = ["sector_batches", "fill_small_tables", "institutions_sql"]

DAY_MS = 86_400_000
_SUBSECTORS = {"bank": "bank", "sec": "securities", "ins": "insurance", "pay": "payment", "reg": "other"}


def institutions_sql() -> str:
    """``INSERT INTO institutions`` of the eight benchmark institutions."""
    rows = [f"('{i}', 'Institution {i}', '{_SUBSECTORS[i.split('-')[0]]}', 'region-{k % 3}', {1 + k % 5})"
            for k, i in enumerate(INSTITUTIONS)]
    return "INSERT INTO institutions (id, name, subsector, region, criticality) VALUES " + ", ".join(rows)


def _times(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.sort(START_MS + rng.integers(0, DAY_MS, n))


def sector_batches(n: int, seed: int = 0) -> dict[str, RecordBatch]:
    """Batches of ``n`` rows for every table the flows and alerts do not fill, by table."""
    rng = np.random.default_rng(seed)
    t = _times(rng, n)
    inst = INSTITUTIONS[rng.integers(0, len(INSTITUTIONS), n)]
    ids = [f"bench-{seed}-{i}" for i in range(n)]
    scope = np.where(rng.random(n) < 0.8, "institution", "sector")
    status = np.array(["active", "closed"], dtype=object)[rng.integers(0, 2, n)]
    return {
        "campaigns": CAMPAIGN.make_batch({
            "campaign_id": ids, "first_seen_ms": t - 600_000, "last_seen_ms": t, "title": "scan wave",
            "kind": "scan", "severity": rng.integers(2, 6, n), "score": rng.random(n), "status": status,
            "institutions": "bank-a,pay-f", "institutions_hit": rng.integers(1, 8, n), "entities": "203.0.113.7",
            "techniques": "T1046", "alerts": rng.integers(1, 500, n), "summary": ""}),
        "warnings": WARNING.make_batch({
            "warning_id": ids, "time_ms": t, "campaign_id": ids, "scope_kind": scope,
            "scope_id": np.where(scope == "sector", "sector", inst), "severity": rng.integers(2, 6, n),
            "title": "expect scans", "body": "", "indicators": "203.0.113.7", "techniques": "T1046",
            "status": np.where(rng.random(n) < 0.9, "open", "withdrawn")}),
        "threat_levels": LEVEL.make_batch({
            "time_ms": t, "scope_kind": scope, "scope_id": np.where(scope == "sector", "sector", inst),
            "level": rng.integers(1, 6, n), "score": rng.random(n), "contributions": "{}"}),
        "emergencies": EMERGENCY.make_batch({
            "emergency_id": ids, "time_ms": t, "institution_id": inst, "sensor_id": [f"{i}-tap1" for i in inst],
            "kind": "sensor_silent", "severity": 3, "active": rng.integers(0, 2, n), "why": "", "evidence": "{}"}),
        "heartbeats": HEARTBEAT.make_batch({
            "time_ms": t, "institution_id": inst, "sensor_id": [f"{i}-tap1" for i in inst],
            "packets": rng.integers(0, 10**6, n), "drops": rng.integers(0, 10, n), "flows": rng.integers(0, 10**4, n),
            "spool_batches": 0, "version": "bench"}),
    }


def fill_small_tables(store, n: int = 500) -> None:
    """Institutions and ``n`` rows of every sector table and of heartbeats."""
    store.command(institutions_sql())
    for batch in sector_batches(n).values():
        store.insert(batch)
