"""The analyst's routes end to end on the conftest store: alert page, flow search, triage, cases,
allowlist; tenancy (an analyst reaches its own institution only), CSRF, roles, audit rows."""

from __future__ import annotations

import csv
import io

import pytest

from finsa.dashboards.soc.flowsearch import MAX_ROWS
from tests.dashboards.webview_support import load_picture, login, serve

HOUR_MS = 3_600_000


def _geo(address: str) -> dict:
    return {"country": "ZZ", "as_name": "TEST-AS"}


@pytest.fixture(scope="module", autouse=True)
def picture(store, sector):
    load_picture(store, sector.now_ms)


def _run(store, fn):
    return serve(store, fn, enrich=_geo)


def test_the_alert_page_shows_evidence_flows_activity_and_enrichment(store, sector):
    async def run(client):
        await login(client, "rita")
        resp = await client.get("/api/alerts/a-0")
        return resp.status, await resp.json()

    status, body = _run(store, run)
    assert status == 200, body
    assert body["alert"]["entity"] == sector.attacker and body["alert"]["institution_id"] == "bank-a"
    flows = body["flows"]["rows"]
    assert flows and all(sector.attacker in (f["src_ip"], f["dst_ip"]) for f in flows)
    assert {f["institution_id"] for f in flows} == {"bank-a"}
    assert body["flows"]["filter"].startswith("institution_id = 'bank-a'")
    assert {a["institution_id"] for a in body["entity"]["alerts"]} == {"bank-a", "ins-c"}
    assert [c["campaign_id"] for c in body["entity"]["campaigns"]] == ["camp-1"]
    assert body["entity"]["warnings"] and body["enrichment"]["country"] == "ZZ"
    assert body["triage"]["current"] is None


def test_an_analyst_sees_only_its_own_alerts(store, sector):
    async def run(client):
        await login(client, "ana")
        own, other = await client.get("/api/alerts/d-0"), await client.get("/api/alerts/a-0")
        page = await client.get("/alerts/d-0")
        return own.status, await own.json(), other.status, page.status, await page.text()

    own, body, other, page, text = _run(store, run)
    assert own == 200 and body["alert"]["institution_id"] == "pay-d"
    assert {a["institution_id"] for a in body["entity"]["alerts"]} == {"pay-d"}
    assert other == 404
    assert page == 200 and "alert.js" in text and "d-0" in text


def test_flow_search_filters_limits_and_exports(store, sector):
    params = {"from": str(sector.now_ms - HOUR_MS), "to": str(sector.now_ms + 1)}

    async def run(client):
        await login(client, "rita")
        hits = await (await client.get("/api/flows", params={**params, "q": "dst_ip in 10.1.0.0/16 and dst_port = 443"})).json()
        limited = await (await client.get("/api/flows", params={**params, "q": "", "limit": "3"})).json()
        bad = await client.get("/api/flows", params={**params, "q": "dst_port in (22,"})
        too_many = await client.get("/api/flows", params={**params, "limit": str(MAX_ROWS + 1)})
        exported = await client.get("/api/flows", params={**params, "q": "dst_ip in 10.1.0.0/16", "format": "csv"})
        await login(client, "ana")
        ana = await (await client.get("/api/flows", params={**params, "q": "dst_ip in 10.0.0.0/8"})).json()
        ana_or = await (await client.get("/api/flows", params={
            **params, "q": f"src_ip = {sector.attacker} or dst_ip in 10.1.0.0/16"})).json()  # per-term keys
        assert {dict(zip(ana_or["columns"], r))["institution_id"] for r in ana_or["rows"]} == {"pay-d"}
        assert len(ana_or["rows"]) == sum(r[1] for r in ana_or["chart"]["rows"]) == 10
        return hits, limited, bad.status, await bad.json(), too_many.status, await exported.text(), ana

    hits, limited, bad, bad_body, too_many, exported, ana = _run(store, run)
    rows = [dict(zip(hits["columns"], r)) for r in hits["rows"]]
    assert len(rows) == 10 and all(r["dst_ip"].startswith("10.1.") for r in rows)
    assert sum(r[1] for r in hits["chart"]["rows"]) == 10
    assert len(limited["rows"]) == 3 and limited["truncated"]
    assert bad == 400 and bad_body["position"] == 16
    assert too_many == 400
    table = list(csv.reader(io.StringIO(exported)))
    assert table[0][:2] == ["flow_id", "first_seen_ms"] and len(table) == 11
    assert {dict(zip(ana["columns"], r))["institution_id"] for r in ana["rows"]} == {"pay-d"}


def test_triage_false_positive_proposal_accepted_and_audited(store, sector):
    async def run(client):
        out = {}
        csrf = await login(client, "ana")
        out["no_csrf"] = (await client.post("/api/alerts/d-0/triage", json={"state": "acknowledged"})).status
        out["other"] = (await client.post("/api/alerts/a-0/triage", json={"state": "acknowledged"},
                                          headers={"X-CSRF-Token": csrf})).status
        out["no_verdict"] = (await client.post("/api/alerts/d-0/triage", json={"state": "closed"},
                                               headers={"X-CSRF-Token": csrf})).status
        ack = await client.post("/api/alerts/d-0/triage", json={"state": "in_progress", "assignee": "ana"},
                                headers={"X-CSRF-Token": csrf})
        closed = await client.post("/api/alerts/d-0/triage",
                                   json={"state": "closed", "verdict": "false_positive", "note": "resolver of a partner"},
                                   headers={"X-CSRF-Token": csrf})
        out["ack"], out["closed"] = ack.status, await closed.json()
        out["ana_decides"] = (await client.post(f"/api/allowlist/{out['closed']['proposed']['entry_id']}",
                                                json={"decision": "accept"}, headers={"X-CSRF-Token": csrf})).status
        csrf = await login(client, "rita")
        out["rita_triage"] = (await client.post("/api/alerts/d-0/triage", json={"state": "acknowledged"},
                                                headers={"X-CSRF-Token": csrf})).status
        csrf = await login(client, "otto")
        entry_id = out["closed"]["proposed"]["entry_id"]
        out["accepted"] = await (await client.post(f"/api/allowlist/{entry_id}", json={"decision": "accept"},
                                                   headers={"X-CSRF-Token": csrf})).json()
        out["detail"] = await (await client.get("/api/alerts/d-0")).json()
        return out

    out = _run(store, run)
    assert out["no_csrf"] == 403 and out["other"] == 404 and out["no_verdict"] == 400
    assert out["ack"] == 200 and out["closed"]["state"]["verdict"] == "false_positive"
    proposed = out["closed"]["proposed"]
    assert (proposed["entity"], proposed["detector"], proposed["institution_id"]) == (sector.lone_source, "dns_tunnel", "pay-d")
    assert proposed["reason"] == "resolver of a partner"
    assert out["ana_decides"] == 403 and out["rita_triage"] == 403
    assert out["accepted"]["status"] == "accepted"
    history = out["detail"]["triage"]["history"]
    assert [h["state"] for h in history] == ["in_progress", "closed"] and history[-1]["user"] == "ana"
    assert out["detail"]["triage"]["proposed"][0]["status"] == "accepted"
    audit = store.query("SELECT principal, action, count() FROM audit_log WHERE action IN ('triage', 'allowlist') "
                        "GROUP BY principal, action ORDER BY principal, action").rows
    assert audit == [("operator", "allowlist", 1), ("pay-d", "allowlist", 1), ("pay-d", "triage", 2)]


def test_cases_escalate_to_the_regulator(store, sector):
    async def run(client):
        out = {}
        csrf = await login(client, "ivo")
        made = await client.post("/api/cases", json={"title": "brute force wave", "campaign_id": "camp-1",
                                                      "alert_ids": ["c-0", "c-1"]}, headers={"X-CSRF-Token": csrf})
        case = await made.json()
        out["foreign"] = (await client.post("/api/cases", json={"alert_ids": ["a-0"]},
                                            headers={"X-CSRF-Token": csrf})).status
        out["rita_before"] = (await (await client.get("/api/cases", )).json())["cases"]
        await client.post("/api/cases", json={"case_id": case["case_id"], "status": "escalated"},
                          headers={"X-CSRF-Token": csrf})
        await login(client, "rita")
        out["rita"] = (await (await client.get("/api/cases")).json())["cases"]
        await login(client, "ana")
        out["ana"] = (await (await client.get("/api/cases")).json())["cases"]
        return case, out

    case, out = _run(store, run)
    assert case["alert_ids"] == ["c-0", "c-1"] and case["campaign_id"] == "camp-1"
    assert out["foreign"] == 403
    assert [(c["case_id"], c["status"], c["institution_id"]) for c in out["rita"]] == [(case["case_id"], "escalated", "ins-c")]
    assert out["ana"] == []


@pytest.mark.parametrize("text, limit", [
    ("src_ip = {attacker} or dst_ip in 10.1.0.0/16", 7),  # overlapping terms: every flow, once
    ("dst_ip in 10.1.0.0/16 or dst_ip = 10.2.0.1 or src_ip = 198.51.100.200", 5),
    ("dst_ip in 10.1.0.0/16 or dst_port = 22", 500),
    ("dst_ip in 10.0.0.0/8", 3),  # one term: the chart still counts all 40 matches, not the page's 3
])
def test_the_projection_plans_find_what_one_statement_finds(store, sector, monkeypatch, text, limit):
    from finsa.dashboards.soc import flowsearch

    query = flowsearch.FlowQuery(text.format(attacker=sector.attacker), sector.now_ms - HOUR_MS, sector.now_ms + 1, limit)
    rows_sql, chart_sql, params = flowsearch.search_sql(query)
    assert "IN (SELECT" in rows_sql and ("UNION ALL" in rows_sql and "UNION ALL" in chart_sql) == (" or " in text)
    got = store.query(rows_sql, params).rows, store.query(chart_sql, params).rows
    monkeypatch.setattr(flowsearch, "PROJECTED", [])  # the search as one statement
    rows_sql, chart_sql, params = flowsearch.search_sql(query)
    assert "IN (SELECT" not in rows_sql
    want = store.query(rows_sql, params).rows, store.query(chart_sql, params).rows
    assert got == want and len(got[0]) == min(limit, sum(r[1] for r in got[1])) > 0
