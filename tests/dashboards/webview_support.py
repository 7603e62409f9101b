"""Helpers for the web view tests: accounts, a sector picture (campaign, warnings, recorded levels)
on top of the conftest store, and a test client that logs in.

The picture: one campaign hit Alpine Bank then Coastal Insurance; warnings went to the insurance
subsector, to Quiet Savings (not hit yet), to the whole sector, one to Alpine Bank alone and one
to Delta Payments that was withdrawn; the sector layer recorded level 5 for Alpine Bank, 4 for
Coastal Insurance and 5 for the sector.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable

from aiohttp.test_utils import TestClient, TestServer

from finsa.dashboards.users import User, Users, hash_password
from finsa.dashboards.webview import create_app

PASSWORD = "a long test passphrase"
_HASH = hash_password(PASSWORD, n=2**10)  # cheap cost: tests log in often
USERS = Users([
    User(username="rita", role="regulator", password_hash=_HASH),
    User(username="otto", role="operator", password_hash=_HASH),
    User(username="ana", role="institution", institution="pay-d", password_hash=_HASH),
    User(username="ivo", role="institution", institution="ins-c", password_hash=_HASH),
    User(username="nobody", role="institution", institution="gone-z", password_hash=_HASH),
])
#: Text only the regulator and Alpine Bank may see.
PRIVATE_TO_BANK_A = "Alpine Bank: internal finding"


def load_picture(store: Any, now_ms: int) -> None:
    """Write the sector picture above (once per store)."""
    if store.query("SELECT count() FROM warnings WHERE warning_id = 'w-q'").rows[0][0]:
        return
    minute = 60_000
    store.write_rows("campaigns", [{
        "campaign_id": "camp-1", "first_seen_ms": now_ms - 10 * minute, "last_seen_ms": now_ms - minute,
        "title": "Brute force wave from 203.0.113.66", "kind": "same_source", "severity": 5, "score": 9.5,
        "status": "active", "institutions": json.dumps(["bank-a", "ins-c"]), "institutions_hit": 2,
        "entities": json.dumps(["203.0.113.66"]), "techniques": json.dumps(["T1110", "T1046"]), "alerts": 12,
        "summary": "bank then insurer"}])
    warning = {"campaign_id": "camp-1", "severity": 4, "techniques": json.dumps(["T1110"]), "status": "issued",
               "indicators": json.dumps(["203.0.113.66"])}
    store.write_rows("warnings", [
        {**warning, "warning_id": "w-ins", "time_ms": now_ms - 5 * minute, "scope_kind": "subsector",
         "scope_id": "insurance", "title": "Insurers: brute force from 203.0.113.66",
         "body": "A bank was hit first; the same source now tries insurers."},
        {**warning, "warning_id": "w-q", "time_ms": now_ms - 2 * minute, "scope_kind": "institution",
         "scope_id": "bank-q", "title": "Quiet Savings: expect brute force",
         "body": "The source hit two institutions in ten minutes; block it before it reaches you."},
        {**warning, "warning_id": "w-all", "time_ms": now_ms - 3 * minute, "scope_kind": "sector",
         "scope_id": "", "severity": 3, "title": "Sector: password spraying wave",
         "body": "Several subsectors see the same source."},
        {**warning, "warning_id": "w-a", "time_ms": now_ms - 4 * minute, "scope_kind": "institution",
         "scope_id": "bank-a", "title": PRIVATE_TO_BANK_A, "body": "Compromised host 10.1.0.7",
         "indicators": json.dumps(["10.1.0.7"])},
        {**warning, "warning_id": "w-d", "time_ms": now_ms - 6 * minute, "scope_kind": "institution",
         "scope_id": "pay-d", "title": "Delta Payments: withdrawn warning", "body": "false alarm",
         "status": "withdrawn"},
    ])
    store.write_rows("threat_levels", [
        {"time_ms": now_ms - minute, "scope_kind": kind, "scope_id": scope, "level": level, "score": score,
         "contributions": "{}"}
        for kind, scope, level, score in (("institution", "bank-a", 5, 7.5), ("institution", "ins-c", 4, 4.1),
                                          ("sector", "", 5, 7.5), ("subsector", "bank", 5, 7.5))])


def serve(store: Any, fn: Callable[[TestClient], Awaitable[Any]], **app_kw: Any) -> Any:
    """``await fn(client)`` against a fresh app (users: :data:`USERS`) on a test server."""
    async def main() -> Any:
        kw = {"users": USERS, "refresh_s": 2, "title": "finsa test", **app_kw}
        client = TestClient(TestServer(create_app(store, **kw)))
        await client.start_server()
        try:
            return await fn(client)
        finally:
            await client.close()
    return asyncio.run(main())


async def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log ``username`` in through the JSON endpoint; returns the session's CSRF token."""
    resp = await client.post("/api/login", json={"username": username, "password": password})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["csrf"]


def get_as(store: Any, username: str | None, *paths: str) -> list[tuple[int, str, str]]:
    """(status, content type, body) of each GET, logged in as ``username`` (None: not logged in)."""
    async def run(client: TestClient) -> list[tuple[int, str, str]]:
        if username:
            await login(client, username)
        out = []
        for path in paths:
            resp = await client.get(path, allow_redirects=False)
            out.append((resp.status, resp.content_type, await resp.text()))
        return out
    return serve(store, run)
