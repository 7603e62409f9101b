"""The analyst's routes of the web view: alert page, flow search, triage, cases, allowlist.

Behind the same login and CSRF guard as the rest (:mod:`finsa.dashboards.login`); every store
read goes through the user's tenant view (:meth:`finsa.dashboards.reads.PanelReads.view_for`),
every change through :mod:`finsa.dashboards.soc.triage` into :mod:`finsa.storage.triage` and the
audit log.

- ``GET /alerts/{alert_id}``, ``GET /flows``, ``GET /work``: the pages (static HTML + JS); an
  institution's analyst's pages name that institution's agent (:mod:`~finsa.dashboards.soc.agent_link`)
  in their config and CSP, and translate addresses through it in the browser;
- ``GET /api/alerts/{alert_id}``: the alert, its evidence, flows, entity activity, enrichment,
  triage state and history (404 when the user cannot see it);
- ``POST /api/alerts/{alert_id}/triage``: a triage change (JSON body, see :func:`triage.parse_change`);
- ``GET /api/flows?q=&from=&to=&limit=[&format=csv]``: flow search; a bad filter is a 400 with
  ``position``;
- ``GET/POST /api/cases``: an institution's cases (the regulator: every escalated case);
- ``GET /api/allowlist``, ``POST /api/allowlist/{entry_id}``: proposals; the operator decides.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from concurrent.futures import ThreadPoolExecutor
from string import Template
from typing import Any, Callable

from aiohttp import web

from finsa.dashboards.soc import alertpage, flowsearch, triage
from finsa.dashboards.soc.agent_link import AgentOrigins
from finsa.dashboards.login import session_of
from finsa.dashboards.page import PAGE_HEADERS, content_security_policy, level_css, template
from finsa.dashboards.reads import Forbidden, PanelReads
from finsa.dashboards.users import User
from finsa.errors import FinsaError
from finsa.storage.triage import TriageLog

__all__ = ["add_soc_routes"]

_CTX = web.AppKey("soc", dict)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def _call(request: web.Request, fn: Callable[..., Any], *args: Any) -> Any:
    ctx = request.app[_CTX]
    return await asyncio.get_running_loop().run_in_executor(ctx["executor"], fn, *args)


def _query_for(ctx: dict, user: User) -> Callable[[str, dict], Any]:
    view = ctx["reads"].view_for(user)
    return lambda sql, params: view.query(sql, params)


def _json(value: Any) -> web.Response:
    return web.json_response(value, dumps=lambda v: json.dumps(v, default=str))


# --- pages -------------------------------------------------------------------------------
def _page(name: str, request: web.Request, title: str, base: str = "", translates: bool = True,
          **fields: str) -> web.Response:
    """A page for the logged-in user: the body ``static/<name>`` in the frame every analyst page
    shares (``static/soc_page.html``: its head, stylesheets and config), named ``title``; ``base``:
    the way from its path back to the web view's root; ``translates``: it reads addresses through
    the user's agent."""
    session = session_of(request)
    user = session.user
    agents: AgentOrigins = request.app[_CTX]["agents"]
    config = {"csrf": session.csrf, "role": user.role, "institution": user.institution, "user": user.username,
              **fields}
    origin = agents.for_user(user) if translates else None
    if origin:  # the page translates through this institution's agent; nobody else's page names it
        config["agent_url"] = origin
    body = Template(template(name).rstrip("\n")).substitute(
        who=html.escape(f"{user.username} · {user.institution or user.role}"))
    text = Template(template("soc_page.html")).substitute(
        title=html.escape(title), base=base, level_css=level_css(), config=html.escape(json.dumps(config), quote=True),
        body=body)
    return web.Response(text=text, content_type="text/html", charset="utf-8",
                        headers={**PAGE_HEADERS, "Content-Security-Policy": content_security_policy(origin)})


async def _alert_page(request: web.Request) -> web.Response:
    alert_id = request.match_info["alert_id"]
    if not alertpage.valid_alert_id(alert_id):
        raise web.HTTPNotFound()
    return _page("alert.html", request, "alert", base="../", alert_id=alert_id)


async def _flows_page(request: web.Request) -> web.Response:
    return _page("flows.html", request, "flow search")


async def _work_page(request: web.Request) -> web.Response:
    return _page("work.html", request, "cases & allowlist", translates=False)


# --- alerts ------------------------------------------------------------------------------
def _detail(ctx: dict, user: User, alert_id: str) -> dict[str, Any] | None:
    detail = alertpage.alert_detail(alert_id, _query_for(ctx, user), ctx["enrich"])
    if detail is None:
        return None
    log: TriageLog = ctx["log"]
    detail["triage"] = {"current": log.alert_state(alert_id), "history": log.alert_history(alert_id),
                        "proposed": log.entries(alert_id=alert_id)}
    return detail


async def _alert_api(request: web.Request) -> web.Response:
    alert_id = request.match_info["alert_id"]
    if not alertpage.valid_alert_id(alert_id):
        return _error(404, "no such alert")
    ctx, user = request.app[_CTX], session_of(request).user
    try:
        detail = await _call(request, _detail, ctx, user, alert_id)
    except Forbidden as exc:
        return _error(403, str(exc))
    except FinsaError:  # the store's failure: counted by the store, never shown raw
        return _error(500, "the alert could not be read")
    if detail is None:
        return _error(404, "no such alert")
    return _json(detail)


def _apply_triage(ctx: dict, user: User, alert_id: str, change: dict) -> dict[str, Any] | None:
    query = _query_for(ctx, user)
    found = query("SELECT alert_id, institution_id, entity, detector FROM alerts WHERE alert_id = {id:String} "
                  "LIMIT 1", {"id": alert_id})
    if not found.rows:
        return None
    return triage.triage_alert(ctx["log"], user, dict(zip(found.columns, found.rows[0])), change, _now_ms())


async def _body(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise triage.TriageRefused("send JSON (Content-Type: application/json)", 415)
    try:
        return await request.json()
    except ValueError:
        raise triage.TriageRefused("the body is not JSON") from None


async def _triage_api(request: web.Request) -> web.Response:
    alert_id = request.match_info["alert_id"]
    ctx, user = request.app[_CTX], session_of(request).user
    try:
        change = triage.parse_change(await _body(request))
        result = await _call(request, _apply_triage, ctx, user, alert_id, change)
    except triage.TriageRefused as exc:
        return _error(exc.status, str(exc))
    except Forbidden as exc:
        return _error(403, str(exc))
    except FinsaError as exc:
        return _error(400, str(exc))
    if result is None:
        return _error(404, "no such alert")
    return _json(result)


# --- flow search -------------------------------------------------------------------------
def _search(ctx: dict, user: User, query: flowsearch.FlowQuery, chart: bool) -> dict[str, Any]:
    rows_sql, chart_sql, params = flowsearch.search_sql(query)
    run = _query_for(ctx, user)
    rows = run(rows_sql, params)
    out: dict[str, Any] = {"columns": list(rows.columns), "rows": [list(r) for r in rows.rows]}
    if chart:
        per_minute = run(chart_sql, params)
        out["chart"] = {"columns": list(per_minute.columns), "rows": [list(r) for r in per_minute.rows]}
    return out


async def _flows_api(request: web.Request) -> web.Response:
    from finsa.dashboards.webview import jsonable

    if len(request.query) != len(set(request.query.keys())):
        return _error(400, "a parameter is repeated")
    try:
        query = flowsearch.parse_request(dict(request.query), _now_ms())
    except flowsearch.SearchError as exc:
        return _error(400, str(exc), position=exc.position)
    as_csv = request.query.get("format", "") == "csv"
    try:
        result = await _call(request, _search, request.app[_CTX], session_of(request).user, query, not as_csv)
    except Forbidden as exc:
        return _error(403, str(exc))
    except FinsaError as exc:
        return _error(500, f"search failed: {str(exc)[:300]}")
    rows = [jsonable(r) for r in result["rows"]]
    if as_csv:
        return web.Response(text=flowsearch.to_csv(result["columns"], rows), content_type="text/csv",
                            headers={"Content-Disposition": 'attachment; filename="flows.csv"',
                                     "Cache-Control": "no-store"})
    return web.json_response({"q": query.filter, "from": query.from_ms, "to": query.to_ms, "limit": query.limit,
                              "columns": result["columns"], "rows": rows, "truncated": len(rows) >= query.limit,
                              "chart": jsonable(result["chart"])})


# --- cases and allowlist -----------------------------------------------------------------
def _cases(ctx: dict, user: User) -> list[dict[str, Any]]:
    log: TriageLog = ctx["log"]
    if user.role == "institution":
        return log.cases(user.institution)
    return log.cases(status="escalated" if user.role == "regulator" else "")


def _save_case(ctx: dict, user: User, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise triage.TriageRefused("the body must be a JSON object")
    query = _query_for(ctx, user)
    ids = body.get("alert_ids") or []
    readable: set[str] = set()
    if isinstance(ids, list) and ids and all(isinstance(i, str) for i in ids):
        found = query("SELECT DISTINCT alert_id FROM alerts WHERE alert_id IN {ids:Array(String)}", {"ids": ids[:1000]})
        readable = {r[0] for r in found.rows}
    campaign_ok = False
    if isinstance(body.get("campaign_id"), str) and body["campaign_id"]:
        hit = query("SELECT count() FROM campaigns WHERE campaign_id = {c:String}", {"c": body["campaign_id"]})
        campaign_ok = bool(hit.rows[0][0])
    return triage.save_case(ctx["log"], user, body, readable, campaign_ok)


async def _cases_api(request: web.Request) -> web.Response:
    ctx, user = request.app[_CTX], session_of(request).user
    if request.method == "GET":
        return _json({"cases": await _call(request, _cases, ctx, user)})
    try:
        return _json(await _call(request, _save_case, ctx, user, await _body(request)))
    except triage.TriageRefused as exc:
        return _error(exc.status, str(exc))
    except FinsaError as exc:
        return _error(400, str(exc))


def _entries(ctx: dict, user: User) -> list[dict[str, Any]]:
    entries = ctx["log"].entries()
    if user.role == "institution":
        return [e for e in entries if e["institution_id"] == user.institution]
    return entries if user.role == "operator" else []


async def _allowlist_api(request: web.Request) -> web.Response:
    ctx, user = request.app[_CTX], session_of(request).user
    return _json({"entries": await _call(request, _entries, ctx, user)})


async def _decide_api(request: web.Request) -> web.Response:
    ctx, user = request.app[_CTX], session_of(request).user
    try:
        body = await _body(request)
        entry = await _call(request, triage.decide_entry, ctx["log"], user, request.match_info["entry_id"], body)
    except triage.TriageRefused as exc:
        return _error(exc.status, str(exc))
    return _json(entry)


def _geo() -> Callable[[str], dict[str, Any]]:
    from finsa.sector.geo import GeoLookup

    geo = GeoLookup()

    def enrich(address: str) -> dict[str, Any]:
        info = geo.lookup(address)
        return {"country": info.country, "as_name": info.asn}

    return enrich


def add_soc_routes(app: web.Application, store: Any, reads: PanelReads, executor: ThreadPoolExecutor,
                   enrich: Callable[[str], dict[str, Any]] | None = None, agents: AgentOrigins | None = None) -> None:
    """Add the analyst's routes to the web view ``app`` (reads and executor shared with it).
    ``agents``: where each institution's analysts translate addresses (none: pseudonyms only)."""
    app[_CTX] = {"reads": reads, "executor": executor, "log": TriageLog(store),
                 "enrich": enrich if enrich is not None else _geo(), "agents": agents or AgentOrigins()}
    app.router.add_get("/alerts/{alert_id}", _alert_page)
    app.router.add_get("/flows", _flows_page)
    app.router.add_get("/work", _work_page)
    app.router.add_get("/api/alerts/{alert_id}", _alert_api)
    app.router.add_post("/api/alerts/{alert_id}/triage", _triage_api)
    app.router.add_get("/api/flows", _flows_api)
    app.router.add_get("/api/cases", _cases_api)
    app.router.add_post("/api/cases", _cases_api)
    app.router.add_get("/api/allowlist", _allowlist_api)
    app.router.add_post("/api/allowlist/{entry_id}", _decide_api)
