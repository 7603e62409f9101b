"""Grafana dashboards: every panel's SQL (web and Grafana variants) on a real store, the schema
check, links, variables, alert rules and the committed provisioning output."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from finsa.dashboards import grafana, grafana_alerting, grafana_health
from finsa.dashboards.grafana_panels import GRAFANA_TYPES, output_columns
from finsa.dashboards.grafana_schema import problems
from finsa.dashboards.grafana_sql import GrafanaSqlError, expand, to_grafana
from finsa.dashboards.panels import ALL_PANELS, ALL_PANELS_BY_ID, BASE_TABLES, bind

HOUR_MS = 3_600_000
REPO = Path(__file__).resolve().parents[2]


def _tables(store) -> set[str]:
    return {r[0] for r in store.query("SELECT name FROM system.tables WHERE database = currentDatabase()").rows}


def _assert_tables(store, panel) -> None:
    """The store's migrations create every table a panel reads: a missing one is a failure, not a skip."""
    missing = sorted(set(panel.requires) - _tables(store))
    assert not missing, f"panel {panel.id} reads table(s) {', '.join(missing)} the migrations did not create"


def load_sector_rows(store, now_ms: int) -> None:
    """Campaign, warning, level history and heartbeat rows for the conftest sector (once)."""
    if not store.query("SELECT count() FROM campaigns").rows[0][0]:
        store.command(
            "INSERT INTO campaigns (campaign_id, first_seen_ms, last_seen_ms, title, kind, severity, score,"
            " status, institutions, institutions_hit, entities, techniques, alerts, summary) VALUES"
            f" ('camp-1', {now_ms - 10 * 60_000}, {now_ms - 60_000}, 'Brute force wave on bank and insurer',"
            " 'same_source', 5, 9.5, 'active', '[\"bank-a\",\"ins-c\"]', 2, '[\"203.0.113.66\"]',"
            " '[\"T1110\",\"T1046\"]', 12, 'one source, two institutions')")
    if not store.query("SELECT count() FROM warnings").rows[0][0]:
        store.command(
            "INSERT INTO warnings (warning_id, time_ms, campaign_id, scope_kind, scope_id, severity, title,"
            " body, indicators, techniques, status) VALUES"
            f" ('warn-1', {now_ms - 5 * 60_000}, 'camp-1', 'subsector', 'insurance', 4,"
            " 'Insurers: brute force from 203.0.113.66', 'Block the address', '[\"203.0.113.66\"]',"
            " '[\"T1110\"]', 'issued')")
    if not store.query("SELECT count() FROM threat_levels").rows[0][0]:
        rows = ", ".join(f"({now_ms - k * 60_000}, 'institution', 'bank-a', {max(1, 5 - k)}, 1.0, '{{}}'),"
                         f" ({now_ms - k * 60_000}, 'sector', '', {max(1, 5 - k)}, 1.0, '{{}}')"
                         for k in range(6))
        store.command("INSERT INTO threat_levels (time_ms, scope_kind, scope_id, level, score, contributions)"
                      f" VALUES {rows}")
    if not store.query("SELECT count() FROM heartbeats").rows[0][0]:
        store.command("INSERT INTO heartbeats (time_ms, institution_id, sensor_id, packets, drops, flows,"
                      " spool_batches, version, batch_id) VALUES"
                      f" ({now_ms - 60_000}, 'bank-a', 's1', 1000, 7, 40, 0, '0.1.0', '0123456789abcdef'),"
                      f" ({now_ms - 30_000}, 'bank-a', 's1', 2000, 9, 80, 1, '0.1.0', '0123456789abcdef')")


@pytest.fixture(scope="module", autouse=True)
def sector_rows(store, sector):
    load_sector_rows(store, sector.now_ms)


@pytest.fixture(scope="module")
def range_ms(sector):
    return {"from_ms": sector.now_ms - 3 * HOUR_MS, "to_ms": sector.now_ms + 1}


@pytest.mark.parametrize("panel", ALL_PANELS, ids=lambda p: p.id)
@pytest.mark.parametrize("institution", [None, "bank-a"])
def test_grafana_variant_returns_what_the_web_variant_returns(store, sector, range_ms, panel, institution):
    """Same range and filter: the Grafana SQL (macros and variables expanded as Grafana does)
    gives exactly the rows of the parameterised SQL."""
    _assert_tables(store, panel)
    values = {k: str(v) for k, v in range_ms.items()}
    if institution:
        values["institution"] = institution
    values["entity"] = sector.attacker
    web = store.query(panel.sql, bind(panel, values, sector.now_ms))
    sql = expand(to_grafana(panel.sql), range_ms["from_ms"], range_ms["to_ms"],
                 {"institution": institution, "entity": sector.attacker})
    assert "$" not in sql
    gf = store.query(sql)
    assert gf.columns == web.columns and gf.rows == web.rows
    assert web.rows, f"{panel.id} returned nothing for the sector"
    if "*" not in output_columns(panel.sql):
        assert output_columns(panel.sql) == list(web.columns)


def _grafana_rows(store, sector, panel_id, **variables):
    sql = expand(to_grafana(ALL_PANELS_BY_ID[panel_id].sql), sector.now_ms - HOUR_MS, sector.now_ms + 1,
                 {"institution": None, "entity": sector.attacker, **variables})
    return store.query(sql).dicts()


def test_drill_down_panels_show_the_institution(store, sector):
    talkers = _grafana_rows(store, sector, "top_talkers", institution="bank-a")
    assert talkers[0]["source"] == sector.attacker and talkers[0]["flows"] == 10
    services = _grafana_rows(store, sector, "services", institution="bank-a")
    assert (services[0]["proto"], services[0]["port"]) == ("tcp", 443)
    detectors = {r["detector"]: r for r in _grafana_rows(store, sector, "detectors_firing", institution="bank-a")}
    assert set(detectors) == {"portscan", "bruteforce", "beacon"}
    assert detectors["bruteforce"]["max_severity"] == 5
    level = _grafana_rows(store, sector, "institution_level", institution="bank-a")
    assert [(r["institution_id"], r["level"]) for r in level] == [("bank-a", 5)]


def test_sector_and_campaign_panels(store, sector):
    matrix = {(r["subsector"], r["technique"]): r["alerts"] for r in _grafana_rows(store, sector, "technique_matrix")}
    assert matrix[("bank", "T1110")] == 3 and matrix[("insurance", "T1110")] == 3
    assert matrix[("payment", "T1071.004")] == 1
    summary = _grafana_rows(store, sector, "source_summary")[0]
    assert (summary["institutions_hit"], summary["alerts"]) == (2, 12)
    hit = {r["institution_id"] for r in _grafana_rows(store, sector, "source_alerts")}
    assert hit == {"bank-a", "ins-c"}
    assert not _grafana_rows(store, sector, "source_alerts", entity="' OR 1=1 --")
    campaigns = _grafana_rows(store, sector, "active_campaigns", institution="ins-c")
    assert [(c["campaign_id"], c["techniques"]) for c in campaigns] == [("camp-1", "T1110 T1046")]
    assert not _grafana_rows(store, sector, "active_campaigns", institution="bank-q")
    warnings = _grafana_rows(store, sector, "early_warnings")
    assert warnings[0]["title"].startswith("Insurers") and warnings[0]["scope_id"] == "insurance"
    history = _grafana_rows(store, sector, "level_history", institution="bank-a")
    assert {r["scope"] for r in history} == {"bank-a"} and max(r["level"] for r in history) == 5
    countries = _grafana_rows(store, sector, "sources_by_country")
    assert sum(r["alerts"] for r in countries) == 13  # every alert of the hour, once
    sensors = _grafana_rows(store, sector, "sensors")
    assert [(r["sensor_id"], r["drops"], r["packets"]) for r in sensors] == [("s1", 9, 2000)]


def test_variable_queries_run(store, sector):
    ids = [r[0] for r in store.query(expand(grafana.VARIABLE_QUERIES["institution"], 0, 1, {})).rows]
    assert ids == ["bank-a", "bank-q", "ins-c", "pay-d"]
    sql = expand(grafana.VARIABLE_QUERIES["entity"], sector.now_ms - HOUR_MS, sector.now_ms + 1, {})
    assert store.query(sql).rows[0][0] == sector.attacker


def test_alert_rule_queries_run_and_find_the_attacked_bank(store, sector):
    sql = expand(grafana_alerting.LEVEL_SQL, sector.now_ms - 900_000, sector.now_ms + 1, {})
    levels = {r["institution_id"]: r["level"] for r in store.query(sql).dicts()}
    assert levels["bank-a"] >= 4 and levels["bank-q"] == 1
    earlier = expand(grafana_alerting.LEVEL_SQL, sector.now_ms - 3 * HOUR_MS, sector.now_ms - 2 * HOUR_MS, {})
    assert {r["institution_id"]: r["level"] for r in store.query(earlier).dicts()}["bank-a"] == 1
    assert store.query(expand(grafana_alerting.WARNINGS_SQL, 0, sector.now_ms, {})).rows[0][0] >= 1  # warn-1


def test_alert_rules_reference_their_queries():
    for rule in grafana_alerting.alert_rules("finsa", "ds"):
        refs = [d["refId"] for d in rule["data"]]
        assert rule["condition"] in refs and len(set(refs)) == len(refs)
        for d in rule["data"]:
            for source in re.findall(r"\$([A-Z])\b", d["model"].get("expression", "")) + \
                    [d["model"].get("expression", "")][:1]:
                if d["datasourceUid"] == "__expr__" and source:
                    assert source.strip("$") in refs or "$" in source


def test_every_dashboard_conforms_to_the_schema():
    for uid, board in grafana.build_dashboards().items():
        assert board["uid"] == uid
        assert problems(board) == [], uid


def test_schema_check_catches_mistakes():
    board = copy.deepcopy(grafana.build_dashboards()["finsa-sector"])
    board["panels"][0]["fieldConfg"] = {}
    board["panels"][1]["gridPos"]["w"] = 30
    board["panels"][2]["targets"][0]["rawSql"] += " ${nowhere}"
    board["refrsh"] = "5s"
    found = "\n".join(problems(board))
    for expected in ("fieldConfg: not in the schema", "outside the 24-column grid",
                     "undefined variable ${nowhere}", "refrsh: not in the schema"):
        assert expected in found


def test_panel_kinds_map_to_grafana_types_and_no_panel_is_written_twice():
    boards = grafana.build_dashboards()
    for spec in grafana.DASHBOARDS:
        panels = boards[spec.uid]["panels"]
        for panel_id, panel in zip(spec.panels, panels):
            source = ALL_PANELS_BY_ID[panel_id]
            assert panel["type"] == GRAFANA_TYPES[source.kind]
            assert panel["title"] == source.title
            assert panel["targets"][0]["rawSql"] == to_grafana(source.sql)
    geomap = boards["finsa-sector"]["panels"][1]
    layer = geomap["options"]["layers"][0]
    assert layer["location"] == {"mode": "coords", "latitude": "latitude", "longitude": "longitude"}
    assert layer["config"]["color"]["field"] == "level"


def test_data_links_point_at_dashboards_and_their_variables():
    boards = grafana.build_dashboards()
    links = 0
    for board in boards.values():
        for panel in board["panels"]:
            for link in panel["fieldConfig"]["defaults"].get("links") or []:
                uid = re.match(r"^/d/([\w-]+)/", link["url"]).group(1)
                target = boards[uid]
                names = {v["name"] for v in target["templating"]["list"]}
                assert set(re.findall(r"var-(\w+)=", link["url"])) <= names
                fields = set(re.findall(r"__data\.fields\.(\w+)", link["url"]))
                source = next(p for p in grafana.DASHBOARDS if p.uid == board["uid"])
                pid = source.panels[panel["id"] - 1]
                assert fields <= set(output_columns(ALL_PANELS_BY_ID[pid].sql))
                links += 1
    assert links >= 4


def test_unknown_parameter_is_refused():
    with pytest.raises(GrafanaSqlError):
        to_grafana("SELECT {limit:UInt8}")
    with pytest.raises(GrafanaSqlError):
        expand("SELECT $__timeGroup(x)", 0, 1, {})


def test_health_panels_query_metrics_that_exist():
    declared = set()
    for path in REPO.glob("*/**/*.py"):
        if ".venv" in path.parts:
            continue
        declared |= set(re.findall(r'REGISTRY\.(?:counter|gauge)\(\s*"(finsa_[a-z0-9_]+)"', path.read_text()))
    assert grafana_health.metric_names() <= declared


def test_requires_only_names_pipeline_tables():
    for panel in ALL_PANELS:
        assert not set(panel.requires) & set(BASE_TABLES)


@pytest.mark.parametrize("name", ["grafana", "grafana_sql", "grafana_panels", "grafana_health",
                                  "grafana_alerting", "grafana_yaml", "grafana_schema", "report_grades",
                                  "report_render"])
def test_docstring_examples(name):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(f"finsa.dashboards.{name}"))
    assert result.attempted > 0 and result.failed == 0
