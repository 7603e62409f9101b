"""Findings 7, 8, 9 and 12 of issue 15 on the web view.

7: five wrong passwords locked the named account for everyone (anyone could keep the regulator
out). 8: an institution user whose institution id was ``regulator`` got store-wide reads. 9: the
session cap evicted the oldest sessions of all users. 12: API and indicator responses had no
``Cache-Control: no-store`` / ``nosniff`` / CSP."""

from __future__ import annotations

import pytest

from finsa.dashboards.auth import LoginThrottle, SessionStore
from finsa.dashboards.login import AUTH
from finsa.dashboards.users import User, UsersFileError, hash_password, parse_users
from tests.dashboards.webview_support import PASSWORD, serve

CHEAP = hash_password("pw", n=2**10)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_from_other_clients_never_lock_the_real_user_out(store) -> None:
    async def run(client):
        throttle = client.app[AUTH].throttle
        for k in range(50):  # an attacker guessing rita's password from fifty addresses
            throttle.failed(f"addr:10.9.{k}.1", "user:rita")
        right = await client.post("/api/login", json={"username": "rita", "password": PASSWORD})
        return right.status, throttle.account_delay_s("user:rita")
    status, delay = serve(store, run, throttle=LoginThrottle(max_delay_s=0.01))
    assert status == 200  # the right password from a fresh client logs in
    assert delay > 0  # every attempt on the account is slowed down meanwhile


def test_a_client_that_keeps_failing_waits_exponentially_longer() -> None:
    clock = Clock()
    t = LoginThrottle(limit=5, window_s=60, clock=clock)
    for _ in range(5):
        t.failed("addr:198.51.100.9")
    first = t.retry_after("addr:198.51.100.9")
    clock.now += first
    for _ in range(3):
        t.failed("addr:198.51.100.9")
    assert first > 0 and t.retry_after("addr:198.51.100.9") > 2 * first
    assert t.retry_after("addr:198.51.100.10") == 0.0  # another client is not affected


def test_one_user_logging_in_repeatedly_never_ends_another_users_session() -> None:
    sessions = SessionStore(max_sessions=10, max_per_user=3)
    rita = User(username="rita", role="regulator", password_hash=CHEAP)
    ana = User(username="ana", role="institution", institution="bank-a", password_hash=CHEAP)
    token, _ = sessions.create(rita)
    ana_tokens = [sessions.create(ana)[0] for _ in range(50)]
    assert sessions.get(token) is not None
    assert sum(sessions.get(t) is not None for t in ana_tokens) == 3  # the newest three


@pytest.mark.parametrize("reserved", ["regulator", "operator"])
def test_reserved_ids_are_refused_as_institution_ids(reserved) -> None:
    with pytest.raises(UsersFileError, match="reserved"):
        parse_users({"user": [{"username": "eve", "role": "institution", "institution": reserved,
                               "password_hash": CHEAP}]})


def test_users_of_institutions_missing_from_the_registry_are_refused() -> None:
    from finsa.dashboards.users import check_institutions

    users = parse_users({"user": [{"username": "ana", "role": "institution", "institution": "pay-d",
                                   "password_hash": CHEAP},
                                  {"username": "zed", "role": "institution", "institution": "gone-z",
                                   "password_hash": CHEAP}]})
    with pytest.raises(UsersFileError, match="gone-z"):
        check_institutions(users, {"pay-d", "bank-a"})


def test_every_response_carries_the_security_headers(store) -> None:
    async def run(client):
        await client.post("/api/login", json={"username": "rita", "password": PASSWORD})
        out = {}
        for path in ("/api/session", "/api/panels", "/healthz", "/login", "/api/nothing-here", "/"):
            resp = await client.get(path, allow_redirects=False)
            out[path] = resp.headers
        return out
    for path, headers in serve(store, run).items():
        assert headers.get("X-Content-Type-Options") == "nosniff", path
        assert "default-src" in headers.get("Content-Security-Policy", ""), path
        assert headers.get("Cache-Control") == "no-store", path
