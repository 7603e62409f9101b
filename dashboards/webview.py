"""finsa's own web threat view, served with aiohttp from a store.

Routes:

- ``/``: the page (sector map and panels), rendered server-side, refreshed by plain JS.
- ``/api/panels``: the panel definitions as JSON.
- ``/api/panels/{id}?from_ms=&to_ms=&institution=``: one panel's result as JSON. Parameters are
  checked by :func:`finsa.dashboards.panels.bind` (400 when refused) and passed to the store as
  ClickHouse query parameters, never pasted into SQL.
- ``/static/...``: the page's CSS and JS (no CDN, nothing beyond this origin).
- ``/metrics``: ``finsa.metrics.REGISTRY`` in the Prometheus text format.
- ``/healthz``: 200 when the store answers ``SELECT 1``, 503 otherwise.

Store calls block, so they run in a small thread pool owned by the application.

>>> app = create_app(store=None)
>>> sorted(r.resource.canonical for r in app.router.routes() if r.method == "GET")[:3]
['/', '/api/panels', '/api/panels/{panel_id}']
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
from typing import Any, Awaitable, Callable

from aiohttp import web

from finsa.dashboards import page
from finsa.dashboards.panels import (DEFAULT_RANGE_MS, PANELS, PANELS_BY_ID, Panel,
                                     PanelParameterError, bind)
from finsa.metrics import REGISTRY

__all__ = ["create_app", "start_webview", "jsonable", "CONTENT_SECURITY_POLICY"]

REQUESTS = REGISTRY.counter("finsa_webview_requests_total", "Web view requests answered",
                            ["route", "status"])
QUERY_ERRORS = REGISTRY.counter("finsa_webview_query_errors_total",
                                "Panel queries that failed in the store", ["panel"])
#: The page may load and fetch from its own origin only (the view works offline, by design).
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; connect-src 'self'; "
                           "img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                           "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
_STORE = web.AppKey("store", object)
_EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)
_SETTINGS = web.AppKey("settings", dict)


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


async def _run(app: web.Application, panel: Panel, params: dict) -> tuple[list[str], list[list]]:
    """Run a panel's query in the thread pool; columns and JSON-ready rows."""
    store = app[_STORE]
    loop = asyncio.get_running_loop()
    try:
        result = await loop.run_in_executor(app[_EXECUTOR], store.query, panel.sql, params)
    except Exception:
        QUERY_ERRORS.inc(panel=panel.id)
        raise
    return list(result.columns), [jsonable(list(row)) for row in result.rows]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _panel_data(request: web.Request) -> web.Response:
    panel = PANELS_BY_ID.get(request.match_info["panel_id"])
    if panel is None:
        return _error(404, "no such panel")
    if len(request.query) != len(set(request.query.keys())):
        return _error(400, "a parameter is repeated")
    try:
        params = bind(panel, dict(request.query), _now_ms())
    except PanelParameterError as exc:
        return _error(400, str(exc))
    try:
        columns, rows = await _run(request.app, panel, params)
    except Exception:  # the store's failure is counted; the page shows the panel as stale
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
    return web.json_response({"panels": [_describe(p) for p in PANELS]})


async def _index(request: web.Request) -> web.Response:
    now_ms = _now_ms()
    settings = request.app[_SETTINGS]
    wanted = [p for p in PANELS if p.kind != "timeseries"]
    values = {"from_ms": str(now_ms - DEFAULT_RANGE_MS), "to_ms": str(now_ms)}
    outcomes = await asyncio.gather(*(_run(request.app, p, bind(p, values, now_ms)) for p in wanted),
                                    return_exceptions=True)
    results = {p.id: (None if isinstance(o, BaseException) else o) for p, o in zip(wanted, outcomes)}
    text = page.render_page(settings["title"], settings["refresh_s"], results, now_ms, DEFAULT_RANGE_MS)
    return web.Response(text=text, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                                 "Content-Security-Policy": CONTENT_SECURITY_POLICY})


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(text=REGISTRY.render(), content_type="text/plain", charset="utf-8")


async def _healthz(request: web.Request) -> web.Response:
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(request.app[_EXECUTOR], request.app[_STORE].query, "SELECT 1", None)
    except Exception:
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


def create_app(store: Any, refresh_s: float = 5.0, title: str = "finsa") -> web.Application:
    """The web view of ``store`` (anything with ``query(sql, parameters)``), not yet started."""
    if not refresh_s > 0:
        raise ValueError("refresh_s must be positive")
    app = web.Application(middlewares=[_count])
    app[_STORE] = store
    app[_SETTINGS] = {"refresh_s": float(refresh_s), "title": title}
    app[_EXECUTOR] = ThreadPoolExecutor(max_workers=4, thread_name_prefix="finsa-webview")

    async def _shutdown(app: web.Application) -> None:
        app[_EXECUTOR].shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(_shutdown)
    app.router.add_get("/", _index)
    app.router.add_get("/api/panels", _panel_list)
    app.router.add_get("/api/panels/{panel_id}", _panel_data)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_static("/static", str(resources.files("finsa.dashboards") / "static"))
    return app


async def start_webview(store: Any, host: str = "127.0.0.1", port: int = 8600,
                        **kw: Any) -> web.AppRunner:
    """Create the app for ``store`` (``kw`` go to :func:`create_app`) and serve it on host:port.

    The caller stops it with ``await runner.cleanup()``.
    """
    runner = web.AppRunner(create_app(store, **kw), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
