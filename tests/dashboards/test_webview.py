"""The web view's routes against a loaded store: page, JSON API, parameter checks, metrics."""

from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp.test_utils import TestClient, TestServer

from finsa.dashboards import page, threat
from finsa.dashboards.panels import PANELS
from finsa.dashboards.webview import create_app


def _get(store, *paths: str) -> list[tuple[int, str, str]]:
    """(status, content type, body) of each GET, served by a fresh app on a test server."""
    async def run():
        client = TestClient(TestServer(create_app(store, refresh_s=2, title="finsa test")))
        await client.start_server()
        try:
            out = []
            for path in paths:
                resp = await client.get(path)
                out.append((resp.status, resp.content_type, await resp.text()))
            return out
        finally:
            await client.close()
    return asyncio.run(run())


def _json(store, path: str):
    import json
    status, ctype, body = _get(store, path)[0]
    assert ctype == "application/json", body
    return status, json.loads(body)


def test_panel_list(store):
    status, body = _json(store, "/api/panels")
    assert status == 200
    assert [p["id"] for p in body["panels"]] == [p.id for p in PANELS]
    assert all(p["url"].startswith("/api/panels/") and p["description"] for p in body["panels"])


def test_panel_data_as_json(store, sector):
    status, body = _json(store, f"/api/panels/institution_threat?to_ms={sector.now_ms}")
    assert status == 200 and body["kind"] == "map" and body["params"] == {"to_ms": sector.now_ms}
    levels = {row[body["columns"].index("institution_id")]: row[body["columns"].index("level")]
              for row in body["rows"]}
    assert levels["bank-a"] > levels["bank-q"] == 1


def test_top_sources_default_range_is_the_last_hour(store, sector):
    status, body = _json(store, "/api/panels/top_sources")
    assert status == 200
    assert body["params"]["to_ms"] - body["params"]["from_ms"] == 3_600_000
    assert body["rows"][0][0] == sector.attacker


@pytest.mark.parametrize("query", [
    "from_ms=abc", "from_ms=10&to_ms=5", "to_ms=1%3B%20DROP%20TABLE%20alerts", "institution=%27%20OR%201",
    "sql=SELECT%201", "from_ms=1&from_ms=2", "from_ms=0&to_ms=99999999999999",
])
def test_bad_parameters_are_refused_with_400(store, query):
    status, body = _json(store, f"/api/panels/latest_alerts?{query}")
    assert status == 400 and body["error"]


def test_unknown_panel_is_404(store):
    assert _json(store, "/api/panels/nope")[0] == 404


class _BrokenStore:
    def query(self, sql, parameters=None):
        raise RuntimeError("engine down")


def test_store_failure_is_500_counted_and_unhealthy():
    from finsa.metrics import REGISTRY
    errors = REGISTRY.get("finsa_webview_query_errors_total")
    before = errors.value(panel="top_sources")
    (panel,) = _get(_BrokenStore(), "/api/panels/top_sources")
    assert panel[0] == 500 and errors.value(panel="top_sources") == before + 1
    (health, index) = _get(_BrokenStore(), "/healthz", "/")
    assert health[0] == 503
    assert index[0] == 200 and "data unavailable" in index[2]  # the page still renders


def test_health_and_metrics(store):
    (health, _, metrics) = _get(store, "/healthz", "/api/panels/nope", "/metrics")
    assert health[0] == 200 and '"ok"' in health[2]
    assert metrics[0] == 200 and metrics[1] == "text/plain"
    assert re.search(r'finsa_webview_requests_total\{route="/api/panels/\{panel_id\}",status="404"\} [1-9]', metrics[2])


def test_page_is_rendered_server_side(store, sector):
    (status, ctype, html) = _get(store, "/")[0]
    assert status == 200 and ctype == "text/html"
    for inst in sector.registry.institution:
        assert inst.name in html and f'data-id="{inst.id}"' in html
    assert re.search(r'<g class="inst level-5" data-id="bank-a"', html)
    assert re.search(r'<g class="inst level-1" data-id="bank-q"', html)
    assert 'id="sector-level">5<' in html
    assert sector.attacker in html  # latest alerts and top sources tables
    assert "$" not in re.sub(r"<script.*?</script>", "", html, flags=re.S)  # every placeholder filled


def test_page_is_confined_to_its_origin_by_policy(store):
    async def run():
        client = TestClient(TestServer(create_app(store)))
        await client.start_server()
        try:
            return (await client.get("/")).headers["Content-Security-Policy"]
        finally:
            await client.close()
    policy = asyncio.run(run())
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy and "script-src 'self'" in policy


def test_page_and_assets_stay_on_this_origin(store):
    (index, css, js) = _get(store, "/", "/static/style.css", "/static/view.js")
    assert css[0] == js[0] == 200
    for _, _, text in (index, css, js):
        urls = re.findall(r"(?:https?:)?//[\w.-]+", text.replace("http://www.w3.org/2000/svg", ""))
        assert urls == []
    assert "fetch(`api/panels/" in js[2]


def test_render_escapes_store_text():
    rows = (["institution_id", "name", "region", "criticality", "level", "latitude", "longitude"],
            [["evil", "<script>alert(1)</script>", "north", 3, 2, None, None]])
    html = page.render_page("t<i>", 5, {"institution_threat": rows}, 0, 3_600_000)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert "t&lt;i&gt;" in html
    assert threat.LEVELS[2][1] in html


def test_refresh_must_be_positive():
    with pytest.raises(ValueError):
        create_app(None, refresh_s=0)


def test_jsonable_handles_store_types():
    import ipaddress
    from datetime import datetime, timezone
    from decimal import Decimal

    import numpy as np

    from finsa.dashboards.webview import jsonable
    values = [np.uint64(7), np.float64("inf"), ipaddress.ip_address("2001:db8::1"),
              datetime(2024, 1, 2, tzinfo=timezone.utc), Decimal("2.5"), ("a", None), {"k": float("nan")}]
    assert jsonable(values) == [7, None, "2001:db8::1", "2024-01-02T00:00:00+00:00", 2.5, ["a", None], {"k": None}]


def test_page_without_institutions_says_so():
    empty = (["institution_id", "name", "level"], [])
    html = page.render_page("t", 5, {"institution_threat": empty}, 0, 3_600_000)
    assert "no institutions registered yet" in html and 'id="sector-map"' in html
