"""Every panel's SQL against a store with a known sector, and the parameter checks."""

from __future__ import annotations

import pytest

from finsa.dashboards.panels import (KINDS, PANELS, PANELS_BY_ID, PARAMETERS, Panel,
                                     PanelParameterError, bind)

HOUR_MS = 3_600_000


def _run(store, now_ms, panel_id, **values):
    panel = PANELS_BY_ID[panel_id]
    return store.query(panel.sql, bind(panel, {k: str(v) for k, v in values.items()}, now_ms)).dicts()


def test_panel_definitions_are_consistent():
    assert len(PANELS_BY_ID) == len(PANELS)
    for panel in PANELS:
        assert panel.kind in KINDS and panel.title and panel.description
        assert set(panel.parameters) <= set(PARAMETERS)
        assert "<" not in panel.title + panel.description  # no HTML in the definitions
        values = [t.value for t in panel.thresholds]
        assert values == sorted(values)


@pytest.mark.parametrize("panel", PANELS, ids=lambda p: p.id)
def test_every_panel_runs_and_returns_its_field(store, sector, panel):
    result = store.query(panel.sql, bind(panel, {}, sector.now_ms + 1))
    assert result.rows, panel.id
    if panel.field:
        assert panel.field in result.columns


def test_latest_alerts_newest_first_named_and_deduplicated(store, sector):
    rows = _run(store, sector.now_ms, "latest_alerts", from_ms=sector.now_ms - HOUR_MS, to_ms=sector.now_ms)
    assert [r["time_ms"] for r in rows] == sorted((r["time_ms"] for r in rows), reverse=True)
    assert len(rows) == 13  # 14 delivered, one twice; the 2-hour-old one is out of range
    first = rows[0]
    assert first["institution"] == "Alpine Bank" and first["entity"] == sector.attacker
    assert {"time_ms", "institution", "detector", "technique", "entity", "target", "severity"} <= set(first)


def test_latest_alerts_filter_by_institution(store, sector):
    rows = _run(store, sector.now_ms, "latest_alerts", from_ms=sector.now_ms - HOUR_MS, to_ms=sector.now_ms, institution="pay-d")
    assert [(r["institution"], r["entity"]) for r in rows] == [("Delta Payments", sector.lone_source)]


def test_attacker_tops_the_sources(store, sector):
    rows = _run(store, sector.now_ms, "top_sources", from_ms=sector.now_ms - HOUR_MS, to_ms=sector.now_ms)
    top = rows[0]
    assert top["entity"] == sector.attacker
    assert (top["institutions_hit"], top["alerts"]) == (2, 12)
    assert top["techniques"] == "T1046 T1071 T1110"
    assert [r["entity"] for r in rows] == [sector.attacker, sector.lone_source]


def test_alerts_per_minute_counts_every_alert_once(store, sector):
    rows = _run(store, sector.now_ms, "alerts_per_minute", from_ms=sector.now_ms - 3 * HOUR_MS, to_ms=sector.now_ms)
    per_inst: dict[str, int] = {}
    for r in rows:
        assert r["minute_ms"] % 60_000 == 0
        per_inst[r["institution_id"]] = per_inst.get(r["institution_id"], 0) + r["alerts"]
    assert per_inst == {"bank-a": 9, "ins-c": 3, "pay-d": 1, "bank-q": 1}


def test_traffic_per_minute(store, sector):
    rows = _run(store, sector.now_ms, "traffic_per_minute", from_ms=sector.now_ms - HOUR_MS, to_ms=sector.now_ms)
    assert sum(r["flows"] for r in rows) == 40
    assert sum(r["bytes"] for r in rows) == 40 * 1500
    assert {r["institution_id"] for r in rows} == {"bank-a", "bank-q", "ins-c", "pay-d"}


def test_map_panel_orders_and_places(store, sector):
    rows = _run(store, sector.now_ms, "institution_threat", to_ms=sector.now_ms)
    assert {"institution_id", "name", "region", "latitude", "longitude", "level"} <= set(rows[0])


def test_bind_defaults_and_only_what_the_sql_uses():
    assert bind(PANELS_BY_ID["top_sources"], {}, 10 * HOUR_MS) == {
        "from_ms": 9 * HOUR_MS, "to_ms": 10 * HOUR_MS, "institution": ""}
    assert bind(PANELS_BY_ID["institution_threat"], {"from_ms": "5"}, 10 * HOUR_MS) == {"to_ms": 10 * HOUR_MS}


@pytest.mark.parametrize("values", [
    {"from_ms": "abc"}, {"to_ms": "1e12"}, {"from_ms": "1; DROP TABLE alerts"},
    {"from_ms": "200", "to_ms": "100"}, {"from_ms": "-5", "to_ms": "100"},
    {"from_ms": "0", "to_ms": str(32 * 24 * HOUR_MS)}, {"institution": "x' OR 1=1 --"},
    {"institution": "Bank A"}, {"sql": "SELECT 1"}, {"to_ms": "99999999999999999999"},
])
def test_bind_refuses_bad_values(values):
    with pytest.raises(PanelParameterError):
        bind(PANELS_BY_ID["latest_alerts"], values, 10 * HOUR_MS)


def test_panel_refuses_unknown_placeholders_and_kinds():
    with pytest.raises(ValueError):
        Panel("x", "X", "SELECT {evil:String}", "table", "d")
    with pytest.raises(ValueError):
        Panel("x", "X", "SELECT 1", "pie", "d")
