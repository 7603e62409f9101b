"""finsa's own web threat view, served with aiohttp from a store.

Routes (every one but the open ones needs a login: :mod:`finsa.dashboards.login`):

- ``/``: the page (sector map, warnings, campaigns and panels), rendered server-side for the
  logged-in user, refreshed by plain JS.
- ``/api/panels``: the panel definitions (:data:`~finsa.dashboards.panels.WEB_PANELS`) as JSON.
- ``/api/panels/{id}?from_ms=&to_ms=&institution=``: one panel's result as JSON. Parameters are
  checked by :func:`finsa.dashboards.panels.bind` (400 when refused) and passed to the store as
  ClickHouse query parameters, never pasted into SQL. Reads go through
  :class:`finsa.dashboards.reads.PanelReads` (tenancy enforced by storage, each read audited)
  behind :class:`finsa.dashboards.panel_cache.PanelCache`: users asking the same panel in the
  same 10 s bucket share one query while its tables are unchanged (a result's time range is at
  most one bucket behind the clock; new data shows within about a second, when the tables'
  versions are next read); a hit's audit row is written within 0.5 s.
- ``/login``, ``/api/login``, ``/api/session``, ``/logout``, ``/api/logout``: see the login module.
- ``/static/...``: the page's CSS and JS (no CDN, nothing beyond this origin). Open.
- ``/metrics``: ``finsa.metrics.REGISTRY`` in the Prometheus text format. Open.
- ``/healthz``: 200 when the store answers ``SELECT 1``, 503 otherwise. Open.

Without a users file (``users=None``) the app makes a one-time regulator account: a random
password valid while this process runs, printed once by :func:`start_webview` beside the URL
with a one-time login link. There is no open mode: a demo started on a shared machine (or
bound to 0.0.0.0) would otherwise show every institution's alerts to anyone who finds the port.

Store calls block, so they run in a small thread pool owned by the application.

>>> app = create_app(store=None)
>>> sorted(r.resource.canonical for r in app.router.routes() if r.method == "GET")[:4]
['/', '/alerts/{alert_id}', '/api/alerts/{alert_id}', '/api/allowlist']
>>> credentials(app).username
'regulator'
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from decimal import Decimal
from importlib import resources
from typing import Any, Awaitable, Callable, Mapping

from aiohttp import web

from finsa.dashboards import login, page
from finsa.dashboards.auth import LoginThrottle, SessionStore
from finsa.dashboards.login import AUTH, Auth, login_link, session_of
from finsa.dashboards.page import CONTENT_SECURITY_POLICY, content_security_policy
from finsa.dashboards.panels import DEFAULT_RANGE_MS, WEB_PANELS, WEB_PANELS_BY_ID, Panel, PanelParameterError, bind
from finsa.dashboards.panel_cache import PanelCache
from finsa.dashboards.reads import Forbidden, PanelReads
from finsa.dashboards.soc.agent_link import AgentOrigins
from finsa.dashboards.soc.routes import add_soc_routes
from finsa.dashboards.users import Credentials, User, Users, one_time_users
from finsa.metrics import REGISTRY

__all__ = ["create_app", "start_webview", "jsonable", "CONTENT_SECURITY_POLICY", "credentials", "login_link"]

REQUESTS = REGISTRY.counter("finsa_webview_requests_total", "Web view requests answered",
                            ["route", "status"])
QUERY_ERRORS = REGISTRY.counter("finsa_webview_query_errors_total",
                                "Panel queries that failed in the store", ["panel"])
_STORE: web.AppKey[Any] = web.AppKey("store")  # a finsa.storage.backend.Store (or a test's stand-in)
_READS = web.AppKey("reads", PanelReads)
_PANELS = web.AppKey("panels", PanelCache)
_CREDENTIALS: web.AppKey[Any] = web.AppKey("credentials")  # Credentials | None
_EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)
_SETTINGS = web.AppKey("settings", dict)
_AGENTS = web.AppKey("agents", AgentOrigins)  # which institution's agent each analyst's page may call


def _now_ms() -> int:
    return int(time.time() * 1000)


def jsonable(value: Any) -> Any:
    """A store value as plain JSON: NaN/inf become null, addresses text (IPv4 unmapped).

    >>> jsonable([ipaddress.ip_address("::ffff:10.0.0.1"), float("nan"), b"\\x01", Decimal("1.5")])
    ['10.0.0.1', None, '01', 1.5]
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, ipaddress.IPv6Address):
        return str(value.ipv4_mapped or value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return jsonable(float(value))
    if hasattr(value, "item"):  # numpy scalar
        return jsonable(value.item())
    if isinstance(value, (ipaddress.IPv4Address, uuid.UUID)):
        return str(value)
    return str(value)


def credentials(app: web.Application) -> Credentials | None:
    """The one-time account the app made (``users=None``), else None."""
    return app[_CREDENTIALS]


async def _run(app: web.Application, user: User, panel: Panel, params: dict) -> tuple[list[str], list[list]]:
    """Run a panel for ``user`` in the thread pool; columns and JSON-ready rows."""
    loop = asyncio.get_running_loop()
    try:
        result = await loop.run_in_executor(app[_EXECUTOR], app[_PANELS].read, user, panel, params)
    except Forbidden:
        raise
    except Exception:
        QUERY_ERRORS.inc(panel=panel.id)
        raise
    return list(result.columns), [jsonable(list(row)) for row in result.rows]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _panel_data(request: web.Request) -> web.Response:
    panel = WEB_PANELS_BY_ID.get(request.match_info["panel_id"])
    if panel is None:
        return _error(404, "no such panel")
    if len(request.query) != len(set(request.query.keys())):
        return _error(400, "a parameter is repeated")
    try:
        params = bind(panel, dict(request.query), _now_ms())
    except PanelParameterError as exc:
        return _error(400, str(exc))
    try:
        columns, rows = await _run(request.app, session_of(request).user, panel, params)
    except Forbidden as exc:
        return _error(403, str(exc))
    except Exception:  # noqa: BLE001 - the store's failure is counted; the page shows the panel as stale
        return _error(500, "query failed")
    return web.json_response({"id": panel.id, "title": panel.title, "kind": panel.kind,
                              "unit": panel.unit, "field": panel.field, "params": params,
                              "columns": columns, "rows": rows})


def _describe(panel: Panel) -> dict[str, Any]:
    return {"id": panel.id, "title": panel.title, "kind": panel.kind, "unit": panel.unit,
            "field": panel.field, "description": panel.description,
            "parameters": panel.parameters, "url": f"/api/panels/{panel.id}",
            "thresholds": [{"value": t.value, "color": t.color, "label": t.label}
                           for t in panel.thresholds]}


async def _panel_list(request: web.Request) -> web.Response:
    return web.json_response({"panels": [_describe(p) for p in WEB_PANELS]})


async def _index(request: web.Request) -> web.Response:
    now_ms = _now_ms()
    settings = request.app[_SETTINGS]
    session = session_of(request)
    wanted = [p for p in WEB_PANELS if p.kind != "timeseries"]
    values = {"from_ms": str(now_ms - DEFAULT_RANGE_MS), "to_ms": str(now_ms)}
    outcomes = await asyncio.gather(*(_run(request.app, session.user, p, bind(p, values, now_ms))
                                      for p in wanted), return_exceptions=True)
    results = {p.id: (None if isinstance(o, BaseException) else o) for p, o in zip(wanted, outcomes)}
    viewer = {"user": session.user.username, "role": session.user.role,
              "institution": session.user.institution, "csrf": session.csrf}
    # an institution's analyst reads its own internal addresses in clear through its agent
    origin = request.app[_AGENTS].for_user(session.user)
    text = page.render_page(settings["title"], settings["refresh_s"], results, now_ms, DEFAULT_RANGE_MS, viewer,
                            agent_url=origin)
    return web.Response(text=text, content_type="text/html", charset="utf-8",
                        headers={**page.PAGE_HEADERS, "Content-Security-Policy": content_security_policy(origin)})


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(text=REGISTRY.render(), content_type="text/plain", charset="utf-8")


async def _healthz(request: web.Request) -> web.Response:
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(request.app[_EXECUTOR], request.app[_STORE].query, "SELECT 1", None)
    except Exception:  # noqa: BLE001 - any store failure is the answer: unhealthy
        return web.json_response({"status": "store unavailable"}, status=503)
    return web.json_response({"status": "ok"})


@web.middleware
async def _count(request: web.Request,
                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        REQUESTS.inc(route=name, status=str(exc.status))
        raise
    REQUESTS.inc(route=name, status=str(response.status))
    return response


def create_app(store: Any, refresh_s: float = 5.0, title: str = "finsa", users: Users | None = None, *,
               secure_cookies: bool | None = None, sessions: SessionStore | None = None,
               throttle: LoginThrottle | None = None,
               enrich: Callable[[str], dict[str, Any]] | None = None,
               agent_origins: Mapping[str, str] | None = None) -> web.Application:
    """The web view of ``store`` (anything with ``query(sql, parameters)``), not yet started.

    ``users``: who may log in (None: a one-time regulator account, see :func:`credentials`).
    ``secure_cookies``: force the cookies' Secure flag (None: set it when the request is HTTPS).
    ``enrich``: address -> {country, as_name} for the alert page (None: the offline GeoIP tables).
    ``agent_origins``: institution id -> the origin of its agent's endpoint as its analysts' browsers
    reach it (see :mod:`finsa.dashboards.soc.agent_link`; ConfigError when one is not an origin).
    """
    if not refresh_s > 0:
        raise ValueError("refresh_s must be positive")
    agents = AgentOrigins(agent_origins)
    made = None
    if users is None:
        users, made = one_time_users()
    app = web.Application(middlewares=[_count, login.guard], client_max_size=64 * 1024)
    app.on_response_prepare.append(login.security_headers)
    app[_STORE] = store
    app[_READS] = PanelReads(store)
    app[_PANELS] = PanelCache(app[_READS])  # panels of many users: one query per key and 10 s bucket
    app[_CREDENTIALS] = made
    app[AUTH] = Auth(users, sessions or SessionStore(), throttle or LoginThrottle(), secure_cookies, title)
    app[_SETTINGS] = {"refresh_s": float(refresh_s), "title": title}
    app[_AGENTS] = agents
    app[_EXECUTOR] = ThreadPoolExecutor(max_workers=4, thread_name_prefix="finsa-webview")

    async def _shutdown(app: web.Application) -> None:
        app[_PANELS].close()  # writes the queued audit rows of cache hits
        app[_EXECUTOR].shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(_shutdown)
    app.router.add_get("/", _index)
    app.router.add_get("/api/panels", _panel_list)
    app.router.add_get("/api/panels/{panel_id}", _panel_data)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    login.add_routes(app)
    add_soc_routes(app, store, app[_READS], app[_EXECUTOR], enrich, agents)
    app.router.add_static("/static", str(resources.files("finsa.dashboards") / "static"))
    return app


async def start_webview(store: Any, host: str = "127.0.0.1", port: int = 8600,
                        announce: Callable[[str], None] | None = print,
                        extra_routes: Callable[[web.Application], None] | None = None,
                        ssl_context: Any = None, **kw: Any) -> web.AppRunner:
    """Create the app for ``store`` (``kw`` go to :func:`create_app`) and serve it on host:port.

    When the app made a one-time account, ``announce`` (print by default; None: stay quiet)
    gets one line with its username, password and a one-time login link: show it to the
    person starting finsa only (never to a log). The caller stops the view with
    ``await runner.cleanup()``; ``runner.app`` is the application. ``extra_routes(app)`` adds
    routes served behind the same login (the stream layer's indicator feeds).
    """
    app = create_app(store, **kw)
    if extra_routes is not None:
        extra_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()  # HTTPS with a context
    made = credentials(app)
    if made is not None and announce is not None:
        base = f"{'https' if ssl_context else 'http'}://{host if ':' not in host else f'[{host}]'}:{port}"
        announce(f"finsa: web view login (this run only): user {made.username}, password {made.password}"
                 f" -- or open {base}{login_link(app, made.username)} once")
    return runner
