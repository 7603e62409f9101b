"""Tenancy in the web view: an institution's analyst reads its own rows and sector aggregates
only, whatever the parameters; every read is audited with the user; hostile parameters are fuzzed."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finsa.dashboards.panels import PARAMETERS, WEB_PANELS, WEB_PANELS_BY_ID
from finsa.dashboards.webview import create_app
from tests.dashboards.webview_support import PASSWORD, PRIVATE_TO_BANK_A, USERS, load_picture, login, serve

HOUR_MS = 3_600_000
#: Text that must never reach each analyst: other institutions' alerts, targets, warnings.
FORBIDDEN = {
    "ana": [PRIVATE_TO_BANK_A, "Compromised host", "10.1.0.", "10.3.0.5", "Insurers:", "Quiet Savings: expect",
            "bank then insurer", "Alpine Bank > ", "> Coastal"],
    "ivo": [PRIVATE_TO_BANK_A, "Compromised host", "10.1.0.", "10.4.0.9", "Quiet Savings: expect",
            "withdrawn warning", "Alpine Bank > ", "bank then insurer", "198.51.100.200"],
}
INJECTIONS = ["' OR 1=1 --", "bank-a' OR '1'='1", "1; DROP TABLE alerts", "bank-a\x00", "{institution:String}",
              "') UNION SELECT * FROM finsa.alerts --", "%27", "../../etc/passwd", "bank-a OR 1", "\\' OR 1 #"]


@pytest.fixture(scope="module", autouse=True)
def picture(store, sector):
    load_picture(store, sector.now_ms)


def _range(sector) -> dict[str, str]:
    return {"from_ms": str(sector.now_ms - 3 * HOUR_MS), "to_ms": str(sector.now_ms + 1)}


def _read_all(store, sector, username: str, extra: dict[str, str] | None = None) -> dict[str, tuple[int, dict]]:
    async def run(client):
        await login(client, username)
        out = {}
        for panel in WEB_PANELS:
            resp = await client.get(f"/api/panels/{panel.id}", params={**_range(sector), **(extra or {})})
            out[panel.id] = (resp.status, await resp.json())
        return out
    return serve(store, run)


def _rows(body: dict) -> list[dict]:
    return [dict(zip(body["columns"], r)) for r in body["rows"]]


@pytest.mark.parametrize("username, own, name", [("ana", "pay-d", "Delta Payments"),
                                                 ("ivo", "ins-c", "Coastal Insurance")])
def test_an_institution_reads_its_own_rows_and_sector_aggregates(store, sector, username, own, name):
    got = _read_all(store, sector, username)
    assert all(status == 200 for status, _ in got.values()), {k: v[0] for k, v in got.items()}
    body = {k: _rows(v[1]) for k, v in got.items()}
    assert body["latest_alerts"] and {r["institution"] for r in body["latest_alerts"]} == {name}
    for pid in ("alerts_per_minute", "traffic_per_minute"):
        assert {r["institution_id"] for r in body[pid]} == {own}, pid
    for row in body["sector_map"]:  # every institution is on the map, only its own with figures
        if row["institution_id"] == own:
            assert row["level"] >= 1 and row["level_source"] in ("alerts", "recorded")
        else:
            assert row["level"] is None and row["alerts"] is None and row["level_source"] == "withheld"
    assert len(body["sector_map"]) == 4
    assert body["sector_level"][0]["level"] == 5  # sector aggregate: the whole sector
    # k = 3: two banks, one insurer and one payment firm are shown as one group, never one by one
    assert {r["subsector"] for r in body["subsector_threat"]} == {"bank+insurance+payment"}
    expected_warnings = {"ana": {"w-all", "w-d"}, "ivo": {"w-all", "w-ins"}}[username]
    assert {r["warning_id"] for r in body["warnings"]} == expected_warnings
    text = json.dumps({k: v[1] for k, v in got.items()})
    for marker in FORBIDDEN[username]:
        assert marker not in text, marker


def test_campaigns_hide_the_other_institutions(store, sector):
    ivo = _rows(_read_all(store, sector, "ivo")["campaigns"][1])
    assert [(r["campaign_id"], r["hit_in_order"]) for r in ivo] == [("camp-1", "you and 1 other(s)")]
    assert _rows(_read_all(store, sector, "ana")["campaigns"][1]) == []  # not hit: not shown


def _read_each(store, username: str, queries: list[dict[str, str]]) -> list[tuple[str, dict, int, str]]:
    """(panel, query, status, body) of every web panel with every query, on one logged-in client."""
    async def run(client):
        await login(client, username)
        out = []
        for query in queries:
            for panel in WEB_PANELS:
                resp = await client.get(f"/api/panels/{panel.id}", params=query)
                out.append((panel.id, query, resp.status, await resp.text()))
        return out
    return serve(store, run)


def test_no_institution_parameter_reaches_another_institution(store):
    queries = [{"institution": v} for v in ["bank-a", "ins-c", "bank-q"] + INJECTIONS]
    for pid, query, status, text in _read_each(store, "ana", queries):
        uses = "institution" in WEB_PANELS_BY_ID[pid].parameters
        assert status in ((400, 403) if uses else (200, 400)), (pid, query, status)
        if status == 200:
            assert not any(m in text for m in FORBIDDEN["ana"]), pid


def test_injection_in_every_parameter_is_refused_or_harmless(store):
    queries = [{name: value} for name in sorted(PARAMETERS) for value in INJECTIONS]
    queries += [{"entity": "203.0.113.66"}, {"entity": "10.1.0.1"}, {"entity": "' OR ''='"}]
    for pid, query, status, text in _read_each(store, "ana", queries):
        assert status in (200, 400, 403), (pid, query, status, text)
        if status == 200:
            assert not any(m in text for m in FORBIDDEN["ana"]), (pid, query)


def test_own_institution_filter_is_allowed(store, sector):
    got = _read_all(store, sector, "ana", {"institution": "pay-d"})
    assert all(status == 200 for status, _ in got.values())


def test_page_of_an_institution_shows_only_what_it_may_see(store, sector):
    async def run(client):
        await login(client, "ivo")
        return await (await client.get("/")).text()
    html = serve(store, run)
    assert 'id="viewer">ivo · ins-c<' in html
    assert '<g class="inst level-0" data-id="bank-a"' in html  # withheld, grey
    assert 'data-id="ins-c"' in html and "Insurers: brute force" in html
    for marker in FORBIDDEN["ivo"]:
        assert marker not in html.replace("&gt;", ">"), marker


def test_an_unregistered_institution_reads_nothing(store, sector):
    got = _read_all(store, sector, "nobody")
    assert {pid: status for pid, (status, _) in got.items() if INSTITUTION_OWN(pid)} == \
        {pid: 403 for pid in got if INSTITUTION_OWN(pid)}


def INSTITUTION_OWN(pid: str) -> bool:  # noqa: N802 - reads like the table it mirrors
    from finsa.dashboards.panels import INSTITUTION_READS
    return INSTITUTION_READS[pid] == "own"


def test_every_read_is_audited_with_the_user(store, sector):
    before = store.query("SELECT count() FROM audit_log").rows[0][0]
    _read_all(store, sector, "ivo")
    rows = store.query("SELECT principal, role, statement, parameters, institutions FROM audit_log "
                       "ORDER BY time DESC LIMIT {n:UInt32}", {"n": len(WEB_PANELS)}).dicts()
    assert store.query("SELECT count() FROM audit_log").rows[0][0] == before + len(WEB_PANELS)
    assert sorted(r["statement"] for r in rows) == sorted(p.id for p in WEB_PANELS)
    for r in rows:
        assert (r["principal"], r["role"]) == ("ins-c", "institution")
        assert json.loads(r["parameters"])["audit_user"] == "ivo"
    _read_all(store, sector, "rita", {"institution": "bank-a"})
    reg = store.query("SELECT principal, parameters, institutions FROM audit_log WHERE principal = 'regulator' "
                      "AND statement = 'latest_alerts' ORDER BY time DESC LIMIT 1").dicts()[0]
    assert json.loads(reg["parameters"])["audit_user"] == "rita" and reg["institutions"] == ["bank-a"]


# --- hypothesis: hostile parameters never give a 500, never another tenant's data -------------
@pytest.fixture(scope="module")
def clients(store):
    """Logged-in test clients (ana, rita) on one app and one event loop for the module."""
    loop = asyncio.new_event_loop()
    client = {}

    async def start():
        for name in ("ana", "rita"):
            c = TestClient(TestServer(create_app(store, users=USERS)))
            await c.start_server()
            await login(c, name, PASSWORD)
            client[name] = c
    loop.run_until_complete(start())
    yield loop, client
    for c in client.values():
        loop.run_until_complete(c.close())
    loop.close()


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
_VALUE = st.one_of(_TEXT, st.sampled_from(INJECTIONS + ["bank-a", "pay-d", "", "0", "-1", "9" * 16, "1e3"]),
                   st.integers(-2**63, 2**64).map(str))
_NAME = st.one_of(st.sampled_from(sorted(PARAMETERS)), _TEXT)
_PANEL = st.one_of(st.sampled_from([p.id for p in WEB_PANELS]), _TEXT)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(who=st.sampled_from(["ana", "rita"]), panel=_PANEL,
       params=st.lists(st.tuples(_NAME, _VALUE), max_size=5))
def test_fuzzed_parameters_never_fail_the_server_or_cross_tenants(clients, who, panel, params):
    loop, client = clients

    async def go():
        resp = await client[who].get(f"/api/panels/{quote(panel, safe='')}", params=params)
        return resp.status, await resp.text()
    status, text = loop.run_until_complete(go())
    assert status in (200, 400, 403, 404), (status, text[:300])
    if who == "ana" and status == 200:
        assert not any(m in text for m in FORBIDDEN["ana"])


def test_a_panel_asked_twice_is_one_query_and_two_audit_rows(store, sector):
    from finsa.dashboards.panel_cache import LOOKUPS

    hits = LOOKUPS.value(outcome="hit")
    before = store.query("SELECT count() FROM audit_log WHERE statement = 'latest_alerts'").rows[0][0]

    async def run(client):
        await login(client, "rita")
        got = [await (await client.get("/api/panels/latest_alerts", params=_range(sector))).json() for _ in range(2)]
        return got

    first, again = serve(store, run)  # the app's cleanup writes the queued audit row of the hit
    assert again["rows"] == first["rows"] and LOOKUPS.value(outcome="hit") == hits + 1
    assert store.query("SELECT count() FROM audit_log WHERE statement = 'latest_alerts'").rows[0][0] == before + 2
