"""Which pages may call an institution's agent: its own analysts' alert and flow-search pages
(config and CSP), nobody else's; agent origins refused like any bad config."""

from __future__ import annotations

import json
import re
import html

import pytest

from finsa.dashboards.page import CONTENT_SECURITY_POLICY
from finsa.dashboards.webview import create_app
from finsa.errors import ConfigError
from finsa.institutions import parse_registry
from tests.dashboards.webview_support import login, serve

AGENT = "http://127.0.0.1:9465"


def _pages(store, username: str, **kw) -> list[tuple[str, str]]:
    async def run(client):
        await login(client, username)
        out = []
        for path in ("/alerts/d-0", "/flows", "/work", "/"):
            resp = await client.get(path)
            out.append((resp.headers["Content-Security-Policy"], await resp.text()))
        return out
    return serve(store, run, agent_origins={"pay-d": AGENT + "/"}, **kw)


def _config(page: str) -> dict:
    return json.loads(html.unescape(re.search(r'data-config="([^"]*)"', page).group(1)))


def test_only_the_institutions_own_analysts_pages_name_its_agent(store):
    (alert_csp, alert), (flows_csp, flows), (work_csp, _), (index_csp, index) = _pages(store, "ana")  # pay-d
    for csp, page in ((alert_csp, alert), (flows_csp, flows), (index_csp, index)):  # the threat view too
        assert f"connect-src 'self' {AGENT};" in csp and _config(page)["agent_url"] == AGENT
        assert csp.replace(f" {AGENT}", "") == CONTENT_SECURITY_POLICY  # nothing else loosened
    assert work_csp == CONTENT_SECURITY_POLICY  # a page that translates nothing stays closed
    for user in ("rita", "ivo", "otto"):  # the regulator, another institution, the operator
        for csp, page in _pages(store, user):
            # ":9465", not "9465": the index page embeds epoch-ms alert times, which sometimes hold those digits
            assert csp == CONTENT_SECURITY_POLICY and ":9465" not in page, user


def test_agent_origins_are_checked_like_config():
    with pytest.raises(ConfigError) as caught:
        create_app(None, agent_origins={"pay-d": "http://agent.example:9465", "Bad Id": AGENT,
                                        "bank-a": "https://agent.example/translate"})
    problems = str(caught.value)
    assert "pay-d: plain http" in problems and "'Bad Id'" in problems and "bank-a: an origin only" in problems
    for bad in ("javascript:alert(1)", "https://x;script-src%20*", "https://a b.example", "https://*.example"):
        with pytest.raises(ConfigError, match="agent_url"):
            parse_registry({"institution": [{"id": "pay-d", "name": "D", "subsector": "payment", "agent_url": bad}]})
    registry = parse_registry({"institution": [{"id": "pay-d", "name": "D", "subsector": "payment",
                                                "agent_url": "https://[::1]:9465"}]})
    assert registry.by_id["pay-d"].agent_url == "https://[::1]:9465"
