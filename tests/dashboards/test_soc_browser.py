"""The analyst loop in a real browser (headless chromium over the DevTools protocol): from the
latest-alerts table to the alert page, its flows in the flow search, a false-positive verdict,
the operator accepting the proposed allowlist entry; each step in the audit log, the entry then
applied by a worker's engine; a screenshot of every page."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from finsa.storage.triage import TriageLog
from tests.dashboards.cdp import Browser
from tests.dashboards.test_webview_browser import chromium, served  # noqa: F401 - fixtures shared

pytestmark = pytest.mark.integration
SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _png(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


async def _analyst(browser: Browser, link: str) -> dict:
    out = {}
    await browser.goto(link)  # logs in, lands on the sector view
    await browser.wait("document.querySelector('#panel-latest_alerts a[href=\"alerts/d-0\"]')")
    await browser.evaluate("document.querySelector('#panel-latest_alerts a[href=\"alerts/d-0\"]').click()")
    await browser.wait("location.pathname === '/alerts/d-0' && document.querySelector('#summary dl')")
    await browser.wait("document.getElementById('status').textContent !== 'loading'")
    assert await browser.evaluate("document.getElementById('status').textContent") == "loaded"
    out["alert"] = await browser.evaluate("document.querySelector('main').innerText")
    out["alert_png"] = await browser.screenshot(SHOTS / "soc-alert.png")
    await browser.evaluate("document.getElementById('flows-search').click()")
    await browser.wait("location.pathname === '/flows' && document.getElementById('count').textContent !== ''")
    out["flows"] = await browser.evaluate("[document.getElementById('q').value, document.getElementById('count').textContent]")
    out["flows_png"] = await browser.screenshot(SHOTS / "soc-flows.png")
    await browser.evaluate("document.getElementById('q').value = 'dst_port in (443,'; "
                           "document.getElementById('go').click()")
    await browser.wait("!document.getElementById('error').hidden")
    out["bad_filter"] = await browser.evaluate("document.getElementById('error').textContent")
    await browser.goto(link.split("/login")[0] + "/alerts/d-0")
    await browser.wait("document.getElementById('status').textContent === 'loaded'")
    await browser.evaluate("""(() => { const f = document.getElementById('triage-form');
        f.state.value = 'closed'; f.verdict.value = 'false_positive'; f.note.value = 'our partner resolver';
        document.getElementById('triage-save').click(); })()""")
    await browser.wait("document.getElementById('triage-result').textContent.startsWith('saved')")
    await browser.wait("document.querySelector('#history tbody td.c-state')")
    out["triaged"] = await browser.evaluate("document.getElementById('triage-result').textContent")
    out["history"] = await browser.evaluate("document.querySelector('#history').innerText")
    out["triage_png"] = await browser.screenshot(SHOTS / "soc-triage.png")
    return out


async def _operator(browser: Browser, link: str) -> dict:
    await browser.goto(link)
    await browser.goto(link.split("/login")[0] + "/work")
    await browser.wait("document.querySelector('button.decide-accept')")
    await browser.evaluate("document.querySelector('button.decide-accept').click()")
    await browser.wait("!document.querySelector('button.decide-accept') && "
                       "document.querySelector('#allowlist').innerText.includes('accepted')")
    return {"work": await browser.evaluate("document.querySelector('main').innerText"),
            "work_png": await browser.screenshot(SHOTS / "soc-work.png")}


def test_alert_page_search_triage_and_accept_in_chromium(served, chromium, store, sector, tmp_path):  # noqa: F811 - the fixtures imported above
    async def run():
        async with Browser(chromium, tmp_path / "ana", _free_port()) as browser:
            analyst = await _analyst(browser, served("ana"))
        async with Browser(chromium, tmp_path / "otto", _free_port()) as browser:
            operator = await _operator(browser, served("otto"))
        return analyst, operator

    analyst, operator = asyncio.run(run())
    assert "dns_tunnel" in analyst["alert"] and sector.lone_source in analyst["alert"]
    assert analyst["flows"][0] == "institution_id = 'pay-d' and (src_ip = 198.51.100.200 or dst_ip = 198.51.100.200)"
    assert analyst["flows"][1].endswith("flows")
    assert "at 17:" in analyst["bad_filter"] and "^" in analyst["bad_filter"]
    assert "allowlist entry proposed" in analyst["triaged"] and "false_positive" in analyst["history"]
    assert sector.lone_source in operator["work"] and "accepted" in operator["work"]
    for key in ("alert_png", "flows_png", "triage_png", "work_png"):
        assert _png(analyst.get(key) or operator.get(key)) == (1280, 800), key
    actions = store.query("SELECT principal, action, parameters FROM audit_log WHERE action IN ('triage', 'allowlist') "
                          "ORDER BY time").rows
    assert [(p, a) for p, a, _ in actions] == [("pay-d", "triage"), ("pay-d", "allowlist"), ("operator", "allowlist")]
    assert json.loads(actions[0][2])["audit_user"] == "ana" and json.loads(actions[2][2])["status"] == "accepted"
    searched = store.query("SELECT count() FROM audit_log WHERE principal = 'pay-d' AND statement LIKE '%FROM flows%'").rows
    assert searched[0][0] >= 2  # the alert page's flows and the search, both audited
    accepted = TriageLog(store).accepted_entries()  # what every worker's FeedbackPoller applies (tests/streams)
    assert [(e["entity"], e["detector"], e["institution_id"]) for e in accepted] == [
        (sector.lone_source, "dns_tunnel", "pay-d")]
