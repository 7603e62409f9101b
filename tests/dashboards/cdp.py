"""A few lines of the Chrome DevTools Protocol over aiohttp's websocket client: enough to drive
Debian's headless chromium through pages (navigate, run a script, wait for a condition, screenshot)
without a WebDriver."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp


class Browser:
    """One headless chromium with one page, driven over CDP (use ``async with``)."""

    def __init__(self, chromium: str, profile: Path, port: int) -> None:
        self.chromium, self.profile, self.port = chromium, profile, port
        self._ids = itertools.count(1)

    async def __aenter__(self) -> "Browser":
        self.proc = subprocess.Popen([self.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                      "--disable-background-networking", "--disable-component-update",
                                      "--disable-sync", f"--user-data-dir={self.profile}", "--window-size=1280,800",
                                      f"--remote-debugging-port={self.port}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.http = aiohttp.ClientSession()
        deadline = time.monotonic() + 60
        while True:
            try:
                async with self.http.get(f"http://127.0.0.1:{self.port}/json/list") as resp:
                    pages = [t for t in await resp.json() if t["type"] == "page"]
                if pages:
                    break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its debugging port")
            await asyncio.sleep(0.2)
        self.ws = await self.http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        await self.send("Page.enable")
        await self.send("Emulation.setDeviceMetricsOverride", width=1280, height=800, deviceScaleFactor=1, mobile=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()
        await self.http.close()
        self.proc.terminate()
        self.proc.wait(timeout=20)

    async def send(self, method: str, **params: Any) -> dict:
        ident = next(self._ids)
        await self.ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads((await self.ws.receive(timeout=60)).data)
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait("document.readyState === 'complete' && location.href !== 'about:blank'")

    async def wait(self, condition: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        probe = f"(() => {{ try {{ return Boolean({condition}); }} catch (e) {{ return false; }} }})()"
        while not await self.evaluate(probe):  # a page still loading counts as "not yet"
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout_s} s for {condition}")
            await asyncio.sleep(0.2)

    async def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode((await self.send("Page.captureScreenshot", format="png"))["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data
