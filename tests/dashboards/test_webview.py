"""The web view's routes against a loaded store, logged in as the regulator: page, JSON API,
parameter checks, warnings and campaigns, metrics."""

from __future__ import annotations

import json
import re

import pytest

from finsa.dashboards import page, threat
from finsa.dashboards.panels import WEB_PANELS
from finsa.dashboards.webview import create_app
from tests.dashboards.webview_support import USERS, get_as, load_picture


@pytest.fixture(scope="module", autouse=True)
def picture(store, sector):
    load_picture(store, sector.now_ms)


def _get(store, *paths: str) -> list[tuple[int, str, str]]:
    """(status, content type, body) of each GET, as the regulator, on a fresh app."""
    return get_as(store, "rita", *paths)


def _json(store, path: str):
    status, ctype, body = _get(store, path)[0]
    assert ctype == "application/json", body
    return status, json.loads(body)


def test_panel_list(store):
    status, body = _json(store, "/api/panels")
    assert status == 200
    assert [p["id"] for p in body["panels"]] == [p.id for p in WEB_PANELS]
    assert all(p["url"].startswith("/api/panels/") and p["description"] for p in body["panels"])


def test_panel_data_as_json(store, sector):
    status, body = _json(store, f"/api/panels/sector_map?to_ms={sector.now_ms}")
    assert status == 200 and body["kind"] == "map" and body["params"] == {"to_ms": sector.now_ms}
    rows = {r[body["columns"].index("institution_id")]: dict(zip(body["columns"], r)) for r in body["rows"]}
    # recorded by the sector layer where it has a level, else from the alerts
    assert (rows["bank-a"]["level"], rows["bank-a"]["level_source"]) == (5, "recorded")
    assert (rows["ins-c"]["level"], rows["ins-c"]["level_source"]) == (4, "recorded")
    assert (rows["pay-d"]["level"], rows["pay-d"]["level_source"]) == (2, "alerts")
    assert rows["bank-q"]["level"] == 1
    # open warnings: to bank-q itself, to the insurance subsector; pay-d's was withdrawn
    assert {i for i, r in rows.items() if r["open_warning"]} == {"bank-q", "ins-c", "bank-a"}


def test_campaigns_list_institutions_in_the_order_hit(store, sector):
    status, body = _json(store, f"/api/panels/campaigns?to_ms={sector.now_ms}")
    (row,) = [dict(zip(body["columns"], r)) for r in body["rows"]]
    assert row["hit_in_order"] == "Alpine Bank > Coastal Insurance"
    assert row["techniques"] == "T1110 T1046" and row["first_seen_ms"] == sector.now_ms - 600_000


def test_warnings_show_audience_why_and_indicators(store, sector):
    status, body = _json(store, f"/api/panels/warnings?to_ms={sector.now_ms + 1}")
    rows = {r["warning_id"]: r for r in (dict(zip(body["columns"], x)) for x in body["rows"])}
    assert set(rows) == {"w-ins", "w-q", "w-all", "w-a", "w-d"}
    assert rows["w-q"]["audience"] == "institution bank-q" and rows["w-all"]["audience"] == "whole sector"
    assert "block it" in rows["w-q"]["why"] and rows["w-q"]["indicators"] == "203.0.113.66"
    status, body = _json(store, f"/api/panels/warnings?to_ms={sector.now_ms + 1}&institution=ins-c")
    assert {r[body["columns"].index("warning_id")] for r in body["rows"]} == {"w-ins", "w-all"}


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
    assert "SELECT" not in body["error"]  # no SQL echoed back


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
    assert "engine down" not in panel[2]  # the store's message stays on the server
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
    assert re.search(r'<g class="inst level-5 warned" data-id="bank-a"', html)
    assert re.search(r'<g class="inst level-1 warned" data-id="bank-q"', html)
    assert re.search(r'<g class="inst level-2" data-id="pay-d"', html)  # its warning was withdrawn
    assert 'id="sector-level">5<' in html
    assert sector.attacker in html  # latest alerts and top sources tables
    warnings = re.search(r'id="panel-warnings".*?</section>', html, re.S).group(0)
    assert "Quiet Savings: expect brute force" in warnings and "whole sector" in warnings
    campaigns = re.search(r'id="panel-campaigns".*?</section>', html, re.S).group(0)
    assert "Alpine Bank &gt; Coastal Insurance" in campaigns and "T1110 T1046" in campaigns
    assert 'id="viewer">rita · regulator<' in html and 'name="csrf" value="' in html
    assert "$" not in re.sub(r"<script.*?</script>", "", html, flags=re.S)  # every placeholder filled


def test_page_is_confined_to_its_origin_by_policy(store):
    from tests.dashboards.webview_support import login, serve

    async def run(client):
        await login(client, "rita")
        return (await client.get("/")).headers
    headers = serve(store, run)
    policy = headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy and "script-src 'self'" in policy
    assert "form-action 'self'" in policy and "frame-ancestors 'none'" in policy
    assert headers["Cache-Control"] == "no-store"


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
    warning = (["time_ms", "title", "why", "warning_id"], [[1, "<img src=x onerror=alert(1)>", "<b>", "w"]])
    html = page.render_page("t<i>", 5, {"sector_map": rows, "warnings": warning}, 0, 3_600_000,
                            {"user": "<u>", "role": "regulator", "institution": "", "csrf": '"><x'})
    assert "<img src=x" not in html and "&lt;img src=x" in html and "<u>" not in html and '"><x' not in html
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert "t&lt;i&gt;" in html
    assert threat.LEVELS[2][1] in html


def test_refresh_must_be_positive():
    with pytest.raises(ValueError):
        create_app(None, refresh_s=0, users=USERS)


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
    html = page.render_page("t", 5, {"sector_map": empty}, 0, 3_600_000)
    assert "no institutions registered yet" in html and 'id="sector-map"' in html


def test_withheld_levels_are_grey_and_say_so():
    rows = (["institution_id", "name", "criticality", "level", "open_warning"],
            [["bank-a", "Alpine Bank", 5, None, None], ["pay-d", "Delta Payments", 3, 2, 1]])
    html = page.render_page("t", 5, {"sector_map": rows}, 0, 3_600_000)
    assert re.search(r'<g class="inst level-0" data-id="bank-a".*?level not shared with you', html)
    assert re.search(r'<g class="inst level-2 warned" data-id="pay-d"', html)
    assert '<span class="badge lvl-0">withheld</span>' in html
