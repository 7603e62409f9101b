"""Threat levels and their contributions; emergencies and data-quality flags."""

from __future__ import annotations

import numpy as np

from finsa import wire
from finsa.sector.early_warning import EarlyWarning
from finsa.sector.emergencies import HealthWatch
from finsa.sector.enrich import Provider, ProviderMap
from finsa.sector.levels import ThreatLevels, level_of
from tests.sector.sector_helpers import MIN, T0, registry


def alert(inst, t, severity, detector="portscan", **kw):
    return dict(institution_id=inst, time_ms=t, severity=severity, detector=detector, **kw)


def by_key(rows):
    return {(r.scope, r.key): r for r in rows}


def test_alert_contributions_match_the_dashboard_formula():
    from finsa.dashboards import threat

    levels = ThreatLevels(registry())
    levels.observe(alert("bank-x", T0, 5))
    levels.observe(alert("bank-x", T0, 2, detector="anomaly"))
    row = by_key(levels.compute(T0 + MIN))[("institution", "bank-x")]
    expected = threat.reference_score([5, 2], detectors=2, criticality=5)
    assert abs(row.score - expected) < 0.01 and row.level == threat.level_of(expected) == 5
    assert set(row.contributions) == {"alerts", "breadth", "criticality"}


def test_levels_rise_with_severity_and_fall_back_after_the_window():
    levels = ThreatLevels(registry())
    assert by_key(levels.compute(T0))[("institution", "pay-a")].level == 1
    levels.observe(alert("pay-a", T0 + 1000, 3))
    one = by_key(levels.compute(T0 + MIN))[("institution", "pay-a")].level
    for i in range(10):
        levels.observe(alert("pay-a", T0 + 2000 + i, 4, detector=("synflood", "anomaly")[i % 2]))
    many = by_key(levels.compute(T0 + 2 * MIN))[("institution", "pay-a")].level
    assert 1 < one < many
    assert by_key(levels.compute(T0 + 20 * MIN))[("institution", "pay-a")].level == 1


def test_aggregates_take_the_top_institution_and_breadth():
    levels = ThreatLevels(registry())
    for inst in ("pay-a", "pay-b", "pay-c"):
        levels.observe(alert(inst, T0, 4))
    rows = by_key(levels.compute(T0 + MIN))
    sub = rows[("subsector", "payment")]
    assert sub.contributions["elevated_institutions"] == 1.0 and sub.score > rows[("institution", "pay-a")].score
    assert rows[("subsector", "bank")].level == 1 and rows[("region", "south")].level >= 3
    assert rows[("sector", "sector")].level == sub.level


def test_critical_assets_warnings_and_provider_concentration():
    providers = ProviderMap([Provider(id="cloud-x", name="Cloud X", dependents=["pay-a", "bank-y"])])
    levels = ThreatLevels(registry(), providers)
    levels.observe(alert("pay-b", T0, 2, target_criticality=5))
    levels.observe(alert("cloud-x", T0, 4, provider="cloud-x"))
    levels.note_warning(EarlyWarning("w1", T0, "pay-c", "payment", "campaign_spread", 3, "why"))
    levels.note_warning(EarlyWarning("w2", T0, "", "", "forecast", 3, "why"))
    rows = by_key(levels.compute(T0 + MIN))
    assert rows[("institution", "pay-b")].contributions["critical_assets"] == 1.0
    assert rows[("institution", "pay-a")].contributions["provider"] == 1.5
    assert rows[("institution", "bank-y")].contributions["provider"] == 1.5
    assert "provider" not in rows[("institution", "bank-x")].contributions
    assert rows[("institution", "pay-c")].contributions["warning_campaign_spread"] == 1.5
    assert rows[("institution", "bank-x")].contributions["warning_forecast"] == 0.5  # sector-wide
    assert "warning_campaign_spread" not in by_key(levels.compute(T0 + 2 * 60 * MIN))[("institution", "pay-c")].contributions


def test_level_bounds():
    assert [level_of(s) for s in (0, 0.99, 1, 2, 3.5, 5, 50)] == [1, 1, 2, 3, 4, 5, 5]


def flows(watch, inst, minute, n):
    watch.observe_flows(np.array([inst] * n, dtype=object), np.full(n, T0 + minute * MIN + 500, dtype=np.int64))


def test_flow_collapse_raises_then_clears():
    watch = HealthWatch(registry())
    events = []
    for minute in range(20):
        n = 0 if 10 <= minute < 14 else 100
        flows(watch, "pay-a", minute, n)
        events += watch.check(T0 + (minute + 1) * MIN)
    assert [(e.kind, e.active, e.institution_id) for e in events] == [("dark_flows", True, "pay-a"),
                                                                    ("dark_flows", False, "pay-a")]
    assert events[0].time_ms == T0 + 12 * MIN and events[0].emergency_id == events[1].emergency_id


def test_small_institutions_do_not_go_dark_on_quiet_minutes():
    watch = HealthWatch(registry(), min_baseline_flows=20)
    events = []
    for minute in range(20):
        flows(watch, "pay-a", minute, 3 if minute % 3 else 0)
        events += watch.check(T0 + (minute + 1) * MIN)
    assert events == []


def heartbeat(watch, t, flows_total, arrival=None, sensor="s1"):
    batch = wire.HEARTBEAT.make_batch({"time_ms": [t], "institution_id": ["pay-a"], "sensor_id": [sensor],
                                       "flows": [flows_total]})
    watch.observe_heartbeats(batch.columns, arrival)


def test_stopped_heartbeats_raise_an_emergency():
    watch = HealthWatch(registry(), heartbeat_timeout_ms=120_000)
    for s in range(0, 300, 30):
        heartbeat(watch, T0 + s * 1000, 100 + s)
        assert watch.check(T0 + s * 1000) == []
    [lost] = watch.check(T0 + 270_000 + 121_000)
    assert (lost.kind, lost.active, lost.sensor_id, lost.severity) == ("heartbeat_lost", True, "s1", 4)
    heartbeat(watch, T0 + 400_000, 500)
    [cleared] = watch.check(T0 + 400_000)
    assert cleared.kind == "heartbeat_lost" and not cleared.active


def test_data_quality_flags_for_clock_offset_and_no_data():
    watch = HealthWatch(registry(), no_data_ms=300_000)
    heartbeat(watch, T0, 100, arrival=T0 + 90_000)
    assert [(e.kind, e.quality) for e in watch.check(T0 + 90_000)] == [("clock_offset", True)]
    for s in range(30, 420, 30):
        heartbeat(watch, T0 + s * 1000, 100)  # clock fixed, but the flow counter is stuck
    kinds = [(e.kind, e.active) for e in watch.check(T0 + 420_000)]
    assert ("clock_offset", False) in kinds and ("no_data", True) in kinds
