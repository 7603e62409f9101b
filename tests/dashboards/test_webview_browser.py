"""The threat view in headless Chromium: the rendered DOM names every institution and its level,
the page's script refreshes from the JSON API, and a 1280x800 screenshot is written."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from finsa.dashboards.webview import start_webview

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(store):
    """The web view of the loaded store, on a free loopback port, in a background thread."""
    port = _free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict = {}

    async def start() -> None:
        holder["runner"] = await start_webview(store, port=port, refresh_s=30)
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    assert ready.is_set()
    yield f"http://127.0.0.1:{port}/"
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


def test_dom_names_every_institution_with_its_level(served, chromium, sector, tmp_path):
    dom = _run_chromium(chromium, tmp_path / "profile", "--virtual-time-budget=3000", "--dump-dom", served)
    for inst in sector.registry.institution:
        assert inst.name in dom, inst.id
    assert re.search(r'<g class="inst level-5" data-id="bank-a"', dom)
    assert re.search(r'<g class="inst level-1" data-id="bank-q"', dom)
    assert re.search(r'Alpine Bank</td>.*?<span class="badge lvl-5">5 severe</span>', dom)
    assert 'id="status" class="status ok"' in dom  # the script fetched every panel from the API
    assert "<rect" in dom  # and drew the per-minute charts


def test_screenshot_at_1280x800(served, chromium, tmp_path):
    shot = tmp_path / "view.png"
    _run_chromium(chromium, tmp_path / "profile", "--virtual-time-budget=3000", "--hide-scrollbars",
                  f"--screenshot={shot}", "--window-size=1280,800", served)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 800)
    print(f"screenshot: {shot}")


def test_focus_on_one_institution_narrows_the_alert_panels(served, chromium, tmp_path):
    dom = _run_chromium(chromium, tmp_path / "profile", "--virtual-time-budget=3000", "--dump-dom",
                        served + "#focus=pay-d")
    alerts = re.search(r'id="panel-latest_alerts".*?</section>', dom, re.S).group(0)
    assert "Delta Payments" in alerts and "Alpine Bank" not in alerts
    assert re.search(r'<button id="filter"[^>]*>focus: Delta Payments', dom)
    assert re.search(r'<g class="inst level-2 selected" data-id="pay-d"', dom)
    sources = re.search(r'id="panel-top_sources".*?</section>', dom, re.S).group(0)
    assert "198.51.100.200" in sources and "203.0.113.66" not in sources
