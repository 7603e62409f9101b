"""The sector's blocklist served over HTTP, for institutions' firewalls and SOCs.

Three formats of the same entries (attacker addresses, prefixes, domains, fingerprints of the
campaigns the sector picture recognised, with confidence and expiry), rebuilt on every request so
they grow with the campaigns:

* ``/indicators/plain.txt`` — one value per line, for firewall address lists;
* ``/indicators/stix.json`` — a STIX 2.1 bundle of indicators;
* ``/indicators/misp/manifest.json`` and ``/indicators/misp/{uuid}.json`` — a MISP feed.

The routes sit behind the web view's login like every page but ``/healthz`` and ``/metrics``.
"""

from __future__ import annotations

import json
import time
from typing import Callable

from aiohttp import web

from finsa.sector.indicators import to_misp_feed, to_plain, to_stix_bundle


def indicator_routes(entries: Callable[[], list]) -> Callable[[web.Application], None]:
    """A function adding the indicator routes to an app; ``entries()`` gives the blocklist now."""

    def now_ms() -> int:
        return int(time.time() * 1000)

    async def plain(_: web.Request) -> web.Response:
        return web.Response(text=to_plain(entries(), now_ms()), content_type="text/plain")

    async def stix(_: web.Request) -> web.Response:
        return web.json_response(to_stix_bundle(entries(), now_ms()))

    async def misp(request: web.Request) -> web.Response:
        feed = to_misp_feed(entries(), now_ms())
        name = request.match_info["name"]
        if name not in feed:
            raise web.HTTPNotFound(text="no such MISP feed document")
        return web.Response(text=json.dumps(feed[name]), content_type="application/json")

    def add(app: web.Application) -> None:
        app.router.add_get("/indicators/plain.txt", plain)
        app.router.add_get("/indicators/stix.json", stix)
        app.router.add_get("/indicators/misp/{name}", misp)

    return add
