"""The threat view in headless Chromium: the rendered DOM names every institution and its level,
shows the warnings and campaigns, the page's script refreshes from the JSON API, and 1280x800
screenshots are written.

Headless chromium cannot type into the login form, so each run logs in with a one-time login link
(``/login?token=...``, minted by :func:`finsa.dashboards.webview.login_link`): the server sets the
session cookie and redirects to the page. Each chromium run gets a fresh profile, so a fresh link."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from finsa.dashboards.webview import login_link, start_webview
from tests.dashboards.webview_support import USERS, load_picture

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(store, sector):
    """A function minting a one-time login URL for a user of the web view of the loaded store
    (with its warnings and campaigns), served on a free loopback port in a background thread."""
    load_picture(store, sector.now_ms)
    port = _free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict = {}

    async def start() -> None:
        holder["runner"] = await start_webview(store, port=port, refresh_s=30, users=USERS)
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    assert ready.is_set()
    yield lambda user, tail="": f"http://127.0.0.1:{port}{login_link(holder['runner'].app, user)}{tail}"
    asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


def _run_chromium(chromium: str, profile: Path, *args: str) -> str:
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def chromium():
    from tests.conftest import need_tool
    return need_tool("chromium")


SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


def _dom(chromium, profile: Path, url: str) -> str:
    return _run_chromium(chromium, profile, "--virtual-time-budget=3000", "--dump-dom", url)


def test_login_page_without_a_session(served, chromium, tmp_path):
    dom = _dom(chromium, tmp_path / "profile", served("rita").split("/login")[0] + "/")
    assert '<form class="login-box" method="post" action="login"' in dom and "Alpine" not in dom


def test_dom_names_every_institution_with_its_level(served, chromium, sector, tmp_path):
    dom = _dom(chromium, tmp_path / "profile", served("rita"))
    for inst in sector.registry.institution:
        assert inst.name in dom, inst.id
    assert re.search(r'<g class="inst level-5 warned" data-id="bank-a"', dom)
    assert re.search(r'<g class="inst level-4 warned" data-id="ins-c"', dom)  # recorded by the sector layer
    assert re.search(r'<g class="inst level-1 warned" data-id="bank-q"', dom)  # warned before it is hit
    assert re.search(r'<g class="inst level-2" data-id="pay-d"', dom)
    assert re.search(r'Alpine Bank</td>.*?<span class="badge lvl-5">5 severe</span>', dom)
    warnings = re.search(r'id="panel-warnings".*?</section>', dom, re.S).group(0)
    assert "Quiet Savings: expect brute force" in warnings and "institution bank-q" in warnings
    assert "block it before it reaches you" in warnings and "203.0.113.66" in warnings
    campaigns = re.search(r'id="panel-campaigns".*?</section>', dom, re.S).group(0)
    assert "Alpine Bank &gt; Coastal Insurance" in campaigns and "T1110 T1046" in campaigns
    assert 'id="status" class="status ok"' in dom  # the script fetched every panel from the API
    assert "<rect" in dom  # and drew the per-minute charts


def test_institution_analyst_sees_its_own_picture(served, chromium, tmp_path):
    dom = _dom(chromium, tmp_path / "profile", served("ivo"))
    assert 'id="viewer">ivo · ins-c<' in dom and 'id="status" class="status ok"' in dom
    assert re.search(r'<g class="inst level-4 warned" data-id="ins-c"', dom)
    assert re.search(r'<g class="inst level-0" data-id="bank-a"', dom)  # withheld after the refresh too
    alerts = re.search(r'id="panel-latest_alerts".*?</section>', dom, re.S).group(0)
    assert "Coastal Insurance" in alerts and "Alpine Bank" not in alerts
    assert "Alpine Bank: internal finding" not in dom and "Quiet Savings: expect" not in dom


@pytest.mark.parametrize("user", ["rita", "ivo"])
def test_screenshot_at_1280x800(served, chromium, tmp_path, user):
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / f"webview-{user}.png"
    _run_chromium(chromium, tmp_path / "profile", "--virtual-time-budget=3000", "--hide-scrollbars",
                  f"--screenshot={shot}", "--window-size=1280,800", served(user))
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 800)
    print(f"screenshot: {shot}")


def test_focus_on_one_institution_narrows_the_alert_panels(served, chromium, tmp_path):
    dom = _dom(chromium, tmp_path / "profile", served("rita", "#focus=pay-d"))
    alerts = re.search(r'id="panel-latest_alerts".*?</section>', dom, re.S).group(0)
    assert "Delta Payments" in alerts and "Alpine Bank" not in alerts
    assert re.search(r'<button id="filter"[^>]*>focus: Delta Payments', dom)
    assert re.search(r'<g class="inst level-2 selected" data-id="pay-d"', dom)
    sources = re.search(r'id="panel-top_sources".*?</section>', dom, re.S).group(0)
    assert "198.51.100.200" in sources and "203.0.113.66" not in sources
