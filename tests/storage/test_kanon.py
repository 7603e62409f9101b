"""Finding 4: in the default world every (subsector, region) pair had one institution, so an
analyst rebuilt every other institution's per-technique counts from ``alerts_subsector_1h``, and
the ``uniqExact`` states of ``alerts_geo_1h`` answered "is institution X in this group".

Worst case here: one institution per subsector and region. The tenant views show final numbers
only, over groups of at least k = 3 institutions: no row gives another institution's counts."""

from __future__ import annotations

import numpy as np
import pytest

from finsa import wire
from finsa.institutions import parse_registry
from finsa.storage.access import ACCESS
from finsa.storage.kanon import merge_groups
from finsa.storage.tenant import TenantView, tenant_database

SUBSECTORS = ("bank", "insurance", "payment", "securities", "exchange")
REGISTRY = parse_registry({"institution": [
    {"id": f"{s[:3]}-a", "name": s, "subsector": s, "region": f"r{i}"} for i, s in enumerate(SUBSECTORS)]})
IDS = [i.id for i in REGISTRY.institution]


def _alerts(institution: str, n: int, technique: str, entity: str) -> wire.RecordBatch:
    t = 1_770_000_000_000
    return wire.ALERT.make_batch({
        "alert_id": [f"{institution}-{technique}-{i}" for i in range(n)], "time_ms": np.full(n, t),
        "institution_id": [institution] * n, "entity": [entity] * n, "entity_kind": ["src_ip"] * n,
        "technique": [technique] * n, "severity": [4] * n, "score": [1.0] * n})


@pytest.fixture
def sector(migrated, engine):
    for table in ("alerts_subsector_1h", "alerts_geo_1h"):
        migrated.command(f"TRUNCATE TABLE {table}")
    migrated.load_institutions(REGISTRY)
    for i, inst in enumerate(IDS):  # distinct, recognisable counts per institution and technique
        migrated.insert(_alerts(inst, 3 + i, "T1110", "203.0.113.9"))
        migrated.insert(_alerts(inst, 11 + 2 * i, "T1046", f"198.51.100.{i}"))
    yield migrated
    for inst in IDS:
        engine.command(f"DROP DATABASE IF EXISTS `{tenant_database(migrated, inst)}` SYNC")


def test_no_tenant_view_gives_another_institutions_counts(sector) -> None:
    view = TenantView(sector, "ban-a", k=3)
    rows = view.query("SELECT subsector, region, technique, alerts, institutions FROM alerts_subsector_1h").rows
    assert rows, "the sector aggregate is still shown, merged"
    own = {("T1110", 3), ("T1046", 11)}
    per_institution = {(tech, n) for i in range(len(IDS)) for tech, n in (("T1110", 3 + i), ("T1046", 11 + 2 * i))}
    for _subsector, _region, technique, alerts, institutions in rows:
        assert institutions >= 3, rows
        assert (technique, alerts) not in per_institution - own, rows
    totals = {tech: sum(a for _, _, t, a, _ in rows if t == tech) for tech in ("T1110", "T1046")}
    assert totals == {"T1110": sum(3 + i for i in range(5)), "T1046": sum(11 + 2 * i for i in range(5))}


def test_no_tenant_view_of_sector_data_exposes_a_mergeable_state(sector) -> None:
    view = TenantView(sector, "ban-a", k=3)
    shared = {a.table for a in ACCESS if a.scope == "shared"}
    types = [(t, ty) for t, ty in sector.query(f"SELECT table, type FROM system.columns "
                                               f"WHERE database = '{view.database}'").rows if t in shared]
    assert {t for t, _ in types} == shared  # (the own roll-ups hold the institution's own rows only)
    assert not [(t, ty) for t, ty in types if ty.startswith("AggregateFunction")]  # Simple...: plain values
    geo = view.query("SELECT country, asn, technique, alerts, institutions FROM alerts_geo_1h").rows
    assert all(n >= 3 for *_, n in geo)  # the 198.51.100.x rows (one institution each) are merged


def test_a_sector_smaller_than_k_shows_no_aggregate(sector) -> None:
    assert TenantView(sector, "ban-a", k=6).query("SELECT count() FROM alerts_subsector_1h").rows == [(0,)]


def test_small_groups_merge_into_groups_of_k() -> None:
    groups = merge_groups({("bank", "n"): 4, ("bank", "s"): 1, ("insurance", "n"): 1}, k=3)
    merged = ("bank+insurance", "n+s")  # the two small ones (2 < 3) folded into the smallest large group
    assert groups == {("bank", "n"): merged, ("bank", "s"): merged, ("insurance", "n"): merged}
