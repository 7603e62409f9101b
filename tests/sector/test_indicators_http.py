"""The sector's blocklist served behind the web view's login: plain list, STIX 2.1 bundle, MISP feed."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer

from finsa import wire
from finsa.dashboards.webview import create_app
from finsa.sector.indicators_http import indicator_routes
from finsa.sector.picture import SectorPicture
from finsa.streams.sector_stage import SectorStage
from tests.dashboards.webview_support import USERS, login
from tests.streams.test_sector_stage import REGISTRY, SCANNER, scan_alerts


def test_feeds_carry_the_campaigns_attacker_and_need_a_login() -> None:
    stage = SectorStage(SectorPicture(REGISTRY))
    stage.observe_alerts(wire.encode_batch(scan_alerts(["pay-1", "pay-2"])))
    stage.tick()

    async def run() -> dict:
        app = create_app(None, users=USERS)
        indicator_routes(stage.blocklist)(app)
        client = TestClient(TestServer(app))
        await client.start_server()
        try:
            anonymous = (await client.get("/indicators/plain.txt", allow_redirects=False)).status
            await login(client, "rita")
            plain = await (await client.get("/indicators/plain.txt")).text()
            stix = await (await client.get("/indicators/stix.json")).json()
            manifest = await (await client.get("/indicators/misp/manifest.json")).json()
            event = await (await client.get(f"/indicators/misp/{next(iter(manifest))}.json")).json()
            missing = (await client.get("/indicators/misp/nope.json")).status
            return {"anonymous": anonymous, "plain": plain, "stix": stix, "event": event, "missing": missing}
        finally:
            await client.close()

    got = asyncio.run(run())
    assert got["anonymous"] in (302, 303, 401)
    assert SCANNER in got["plain"].split()
    patterns = [o["pattern"] for o in got["stix"]["objects"] if o["type"] == "indicator"]
    assert got["stix"]["type"] == "bundle" and any(SCANNER in p for p in patterns)
    assert SCANNER in {a["value"] for a in got["event"]["Event"]["Attribute"]}
    assert got["missing"] == 404
