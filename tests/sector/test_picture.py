"""The sector picture end to end on synthetic alerts: campaign, early warning before the hit,
lead time, levels, emergencies, determinism and checkpoints."""

from __future__ import annotations

import pickle

from finsa.sector.enrich import Asset
from finsa.sector.picture import SectorPicture
from tests.sector.sector_helpers import MIN, T0, alerts, flows, registry

ATTACKER = "203.0.113.66"
ORDER = ["pay-a", "pay-b", "pay-c", "pay-d"]


def scan(inst: str, t: int, entity: str = ATTACKER, **kw):
    return alerts([{"institution_id": inst, "time_ms": t, "entity": entity, **kw}])


def run_scenario(sp: SectorPicture, checkpoint: bool = False):
    """The attacker scans four payment institutions ten minutes apart; tick after each hit."""
    updates = []
    for n, inst in enumerate(ORDER):
        t = T0 + n * 10 * MIN
        sp.observe_alerts(scan(inst, t))
        updates.append(sp.tick(t + MIN))
        if checkpoint:
            sp = pickle.loads(pickle.dumps(sp))
    return sp, updates


def test_one_campaign_with_institutions_in_hit_order():
    sp, updates = run_scenario(SectorPicture(registry(), k=2))
    [campaign] = sp.campaigns()
    assert campaign.institution_order() == ORDER
    assert [campaign.institutions[i] for i in ORDER] == [T0 + n * 10 * MIN for n in range(4)]
    assert campaign.alert_count == 4 and campaign.subsectors == {"payment": T0}
    assert not updates[0].campaigns  # one institution is not a campaign yet
    assert [c.campaign_id for c in updates[1].campaigns] == [campaign.campaign_id]


def test_remaining_payment_institutions_warned_before_the_attack_reaches_them():
    sp, updates = run_scenario(SectorPicture(registry(), k=2))
    assert not updates[0].warnings
    warned = {w.institution_id: w for w in updates[1].warnings}
    assert sorted(warned) == ["pay-c", "pay-d", "pay-e"]  # not the banks, not those already hit
    for w in warned.values():
        assert w.kind == "campaign_spread" and ATTACKER in w.indicators and "203.0.113.0/24" in w.indicators
        assert w.subsector == "payment" and w.severity >= 3
    assert warned["pay-c"].time_ms < T0 + 20 * MIN  # before pay-c is hit
    assert not [w for u in updates[2:] for w in u.warnings if w.kind == "campaign_spread"]  # once each
    [campaign] = sp.campaigns()
    assert sp.lead_times(campaign.campaign_id) == {"pay-c": 10 * MIN, "pay-d": 20 * MIN}


def test_institutions_exposing_the_targeted_service_kind_are_warned_too():
    assets = [Asset(institution=i, service="gw", kind="payment_gateway", address=f"10.0.{n}.0/24", ports=[443])
              for n, i in enumerate(["pay-a", "pay-b", "bank-x"])]
    sp = SectorPicture(registry(), assets=assets, k=2)
    sp.observe_alerts(scan("pay-a", T0, target="10.0.0.5:443"))
    sp.observe_alerts(scan("pay-b", T0 + MIN, target="10.0.1.5:443"))
    warned = {w.institution_id for w in sp.tick(T0 + 2 * MIN).warnings}
    assert "bank-x" in warned and "bank-y" not in warned


def test_same_input_same_output_and_checkpoints_change_nothing():
    first = run_scenario(SectorPicture(registry(), k=2))[1]
    again = run_scenario(SectorPicture(registry(), k=2), checkpoint=True)[1]
    assert [u.rows() for u in first] == [u.rows() for u in again]


def test_redelivered_alerts_count_once():
    sp = SectorPicture(registry())
    batch = scan("pay-a", T0)
    sp.observe_alerts(batch)
    sp.observe_alerts(batch)
    sp.observe_alerts(scan("pay-b", T0 + MIN))
    assert sp.campaigns()[0].alert_count == 2


def test_levels_rise_with_severe_alerts_and_fall_back():
    sp = SectorPicture(registry())
    sp.tick(T0)
    sp.observe_alerts(alerts([{"institution_id": "bank-x", "time_ms": T0 + 30_000 + i, "entity": f"198.51.100.{i}",
                               "severity": 5, "detector": d, "technique": "T1499.001"}
                              for i, d in enumerate(["synflood", "anomaly", "portscan"])]))
    levels = {(r.scope, r.key): r for r in sp.tick(T0 + MIN).levels}
    bank = levels[("institution", "bank-x")]
    assert bank.level == 5 and bank.contributions["alerts"] > 0 and bank.contributions["breadth"] > 0
    assert levels[("sector", "sector")].level == 5 and levels[("subsector", "bank")].level == 5
    assert levels[("institution", "bank-y")].level == 1
    later = {(r.scope, r.key): r for r in sp.tick(T0 + 30 * MIN).levels if r.time_ms == T0 + 30 * MIN}
    assert later[("institution", "bank-x")].level == 1 and later[("sector", "sector")].level == 1


def test_level_rows_every_minute_of_flow_time():
    sp = SectorPicture(registry())
    sp.tick(T0)
    rows = sp.tick(T0 + 3 * MIN).levels
    assert sorted({r.time_ms for r in rows}) == [T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN]
    assert {r.scope for r in rows} == {"institution", "subsector", "region", "sector"}


def test_collapsing_flows_raise_an_emergency_and_the_level():
    sp = SectorPicture(registry())
    for minute in range(10):
        sp.observe_flows(flows("pay-a", T0 + minute * MIN, 60))
        sp.observe_flows(flows("pay-b", T0 + minute * MIN, 60))
        sp.tick(T0 + (minute + 1) * MIN)
    raised = []
    for minute in range(10, 14):
        sp.observe_flows(flows("pay-b", T0 + minute * MIN, 60))  # pay-a goes dark
        update = sp.tick(T0 + (minute + 1) * MIN)
        raised += update.emergencies
    assert [(e.institution_id, e.kind, e.active) for e in raised] == [("pay-a", "dark_flows", True)]
    last = {r.key: r for r in update.levels if r.scope == "institution"}
    assert last["pay-a"].contributions.get("emergency") == 2.0 and "emergency" not in last["pay-b"].contributions


def test_module_examples_run():
    import doctest
    import importlib

    for name in ("geo", "intel_feeds", "enrich", "campaigns", "forecast", "early_warning", "emergencies", "levels",
                 "indicators", "picture"):
        module = importlib.import_module(f"finsa.sector.{name}")
        result = doctest.testmod(module)
        assert result.failed == 0, name
