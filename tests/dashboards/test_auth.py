"""Login to the web view: users file, password hashes, sessions, CSRF, throttling, login links."""

from __future__ import annotations

import logging
import re

import pytest

from finsa.dashboards.auth import LoginThrottle, SessionStore
from finsa.dashboards.login import AUTH
from finsa.dashboards.users import (User, UsersFileError, ensure_users, hash_password, load_users,
                                    parse_users, verify_password)
from finsa.dashboards.webview import create_app, credentials, login_link
from finsa.metrics import REGISTRY
from tests.dashboards.webview_support import PASSWORD, USERS, get_as, login, serve

CHEAP = hash_password("pw", n=2**10)


# --- users file ----------------------------------------------------------------------------
def test_hash_is_salted_and_verifies():
    a, b = hash_password("secret", n=2**10), hash_password("secret", n=2**10)
    assert a != b and a.startswith("scrypt$1024$8$1$")
    assert verify_password("secret", a) and not verify_password("Secret", a)


@pytest.mark.parametrize("bad", ["", "md5$x", "scrypt$3$8$1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAA",
                                 "scrypt$1024$8$1$!!$??", "scrypt$67108864$8$1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAA"])
def test_malformed_or_dangerous_hashes_are_refused(bad):
    with pytest.raises(ValueError):
        User(username="x", role="regulator", password_hash=bad)


def test_users_file_round_trip(tmp_path):
    path = tmp_path / "users.toml"
    path.write_text(f'[[user]]\nusername = "rita"\nrole = "regulator"\npassword_hash = "{CHEAP}"\n\n'
                    f'[[user]]\nusername = "ana"\nrole = "institution"\ninstitution = "bank-a"\n'
                    f'password_hash = "{CHEAP}"\n')
    users = load_users(path)
    assert users.authenticate("ana", "pw").principal == "bank-a"
    assert users.authenticate("rita", "pw").principal == "regulator"
    assert users.authenticate("ana", "nope") is None and users.authenticate("ghost", "pw") is None
    assert ensure_users(path)[1] is None


def test_users_file_lists_every_problem():
    data = {"extra": 1, "user": [
        {"username": "rita", "role": "boss", "password_hash": CHEAP},
        {"username": "ana", "role": "institution", "password_hash": CHEAP},
        {"username": "reg", "role": "regulator", "institution": "bank-a", "password_hash": CHEAP},
        {"username": "Bad Name", "role": "regulator", "password_hash": CHEAP, "admin": True},
        {"username": "ok", "role": "operator", "password_hash": CHEAP},
        {"username": "ok", "role": "operator", "password_hash": CHEAP},
    ]}
    with pytest.raises(UsersFileError) as err:
        parse_users(data)
    text = str(err.value)
    for fragment in ("extra", "#1 role", "#2", "needs an institution", "#3", "has no institution",
                     "#4 username", "#4 admin", "#6: username 'ok' is listed twice"):
        assert fragment in text, fragment


def test_missing_users_file_is_an_error_not_an_open_door(tmp_path):
    with pytest.raises(UsersFileError):
        ensure_users(tmp_path / "typo.toml")


def test_without_a_file_a_one_time_regulator_is_made():
    users, made = ensure_users(None)
    assert made.username == "regulator" and len(made.password) >= 20
    assert users.authenticate("regulator", made.password).role == "regulator"
    assert made.password not in repr(made)
    assert ensure_users(None)[1].password != made.password


# --- sessions and throttle -------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_expire_when_idle_and_at_their_age():
    clock = Clock()
    store = SessionStore(ttl_s=100, idle_s=30, clock=clock)
    user = USERS.get("rita")
    token, _ = store.create(user)
    clock.now += 29
    assert store.get(token) is not None  # used: the idle clock restarts
    clock.now += 29
    assert store.get(token) is not None
    clock.now += 31
    assert store.get(token) is None
    token, _ = store.create(user)
    for _ in range(4):
        clock.now += 25
        assert store.get(token) is not None
    clock.now += 1  # 101 s old, never idle: too old
    assert store.get(token) is None


def test_session_store_is_bounded_and_links_are_one_time():
    clock = Clock()
    store = SessionStore(max_sessions=3, clock=clock, max_per_user=3)
    tokens = [store.create(USERS.get("rita"))[0] for _ in range(5)]
    assert len(store) == 3 and store.get(tokens[0]) is None and store.get(tokens[-1]) is not None
    link = store.mint_link(USERS.get("ana"), ttl_s=10)
    clock.now += 11
    assert store.redeem_link(link) is None
    assert store.drop_user("rita") == 3 and len(store) == 0


def test_throttle_forgets_after_the_window():
    clock = Clock()
    throttle = LoginThrottle(limit=3, window_s=60, clock=clock)
    for _ in range(3):
        throttle.failed("addr:a")
    assert throttle.retry_after("addr:a") == pytest.approx(60)
    clock.now += 61
    assert throttle.retry_after("addr:a") == 0


# --- routes ------------------------------------------------------------------------------------
def test_everything_but_health_metrics_login_and_assets_needs_a_session(store):
    got = get_as(store, None, "/", "/api/panels", "/api/panels/sector_map", "/api/session", "/nope",
                 "/healthz", "/metrics", "/login", "/static/style.css")
    assert got[0][0] == 303
    assert [g[0] for g in got[1:5]] == [401, 401, 401, 303]
    assert [g[0] for g in got[5:]] == [200, 200, 200, 200]
    assert "Alpine" not in "".join(g[2] for g in got)


def test_json_login_session_and_logout_with_csrf(store):
    async def run(client):
        bad = await client.post("/api/login", json={"username": "rita", "password": "wrong"})
        assert bad.status == 401
        resp = await client.post("/api/login", json={"username": "rita", "password": PASSWORD})
        cookie = resp.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        csrf = (await resp.json())["csrf"]
        me = await (await client.get("/api/session")).json()
        assert (me["user"], me["role"], me["csrf"]) == ("rita", "regulator", csrf)
        assert (await client.post("/api/logout")).status == 403  # no CSRF token
        assert (await client.post("/api/logout", headers={"X-CSRF-Token": "x" * 43})).status == 403
        foreign = await client.post("/api/logout", headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
        assert foreign.status == 403
        assert (await client.get("/api/session")).status == 200  # still logged in
        assert (await client.post("/api/logout", headers={"X-CSRF-Token": csrf})).status == 200
        return (await client.get("/api/session")).status
    assert serve(store, run) == 401


def test_json_login_needs_json(store):
    async def run(client):
        form = await client.post("/api/login", data={"username": "rita", "password": PASSWORD})
        junk = await client.post("/api/login", data=b"{nope", headers={"Content-Type": "application/json"})
        shape = await client.post("/api/login", json={"username": ["rita"], "password": PASSWORD})
        return form.status, junk.status, shape.status
    assert serve(store, run) == (415, 400, 400)


def test_form_login_uses_a_double_submit_token_and_logout_form_works(store):
    async def run(client):
        page = await (await client.get("/login")).text()
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        forged = await client.post("/login", data={"username": "rita", "password": PASSWORD, "csrf": "forged"},
                                   allow_redirects=False)
        assert forged.status == 403
        stale = token  # every form gets a fresh token: the last one served is the one that counts
        token = re.search(r'name="csrf" value="([^"]+)"', await forged.text()).group(1)
        wrong = await client.post("/login", data={"username": "rita", "password": "x", "csrf": token},
                                  allow_redirects=False)
        text = await wrong.text()
        assert wrong.status == 401 and "Wrong username or password" in text
        token = re.search(r'name="csrf" value="([^"]+)"', text).group(1)
        replayed = await client.post("/login", data={"username": "rita", "password": PASSWORD, "csrf": stale},
                                     allow_redirects=False)
        assert replayed.status == 403
        token = re.search(r'name="csrf" value="([^"]+)"', await replayed.text()).group(1)
        ok = await client.post("/login", data={"username": "rita", "password": PASSWORD, "csrf": token},
                               allow_redirects=False)
        assert ok.status == 303 and ok.headers["Location"] == "/"
        home = await (await client.get("/")).text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', home).group(1)
        assert (await client.post("/logout", data={"csrf": "nope"}, allow_redirects=False)).status == 403
        out = await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)
        assert out.status == 303 and out.headers["Location"] == "/login"
        return (await client.get("/", allow_redirects=False)).status
    assert serve(store, run) == 303


def test_a_new_login_replaces_the_old_session_token(store):
    async def run(client):
        await login(client, "rita")
        first = client.session.cookie_jar.filter_cookies(client.make_url("/"))["finsa_session"].value
        await login(client, "ana")
        second = client.session.cookie_jar.filter_cookies(client.make_url("/"))["finsa_session"].value
        sessions = client.app[AUTH].sessions
        return first != second, sessions.get(first) is None, sessions.get(second).user.username
    assert serve(store, run) == (True, True, "ana")


def test_five_failures_a_minute_get_429_per_address_and_slow_the_account(store):
    throttled = REGISTRY.get("finsa_webview_login_throttled_total")
    before = throttled.value(by="address")

    async def run(client):
        statuses = []
        for k in range(5):
            resp = await client.post("/api/login", json={"username": f"guess{k}", "password": "x"})
            statuses.append(resp.status)
        right = await client.post("/api/login", json={"username": "rita", "password": PASSWORD})
        return statuses, right.status, right.headers.get("Retry-After")
    statuses, status, retry = serve(store, run)
    assert statuses == [401] * 5 and status == 429 and int(retry) >= 1  # even the right password waits

    async def per_user(client):
        throttle = client.app[AUTH].throttle
        for k in range(5):
            throttle.failed(f"addr:10.0.0.{k}", "user:rita")  # from five other addresses
        return (await client.post("/api/login", json={"username": "rita", "password": PASSWORD})).status
    # failures on the account slow it down but never lock the real user out (issue 15, finding 7)
    assert serve(store, per_user, throttle=LoginThrottle(max_delay_s=0.01)) == 200
    assert throttled.value(by="address") == before + 1 and throttled.value(by="account_delay") >= 1


def test_login_link_is_one_time(store):
    async def run(client):
        path = login_link(client.app, "ivo")
        first = await client.get(path, allow_redirects=False)
        assert first.status == 303 and "finsa_session=" in first.headers["Set-Cookie"]
        me = await (await client.get("/api/session")).json()
        client.session.cookie_jar.clear()
        again = await client.get(path, allow_redirects=False)
        return me["user"], again.status
    assert serve(store, run) == ("ivo", 401)


def test_default_app_makes_one_time_credentials(store):
    app = create_app(store)
    made = credentials(app)
    assert made is not None and credentials(create_app(store, users=USERS)) is None

    async def run(client):
        assert (await client.post("/api/login", json={"username": made.username, "password": "x"})).status == 401
        return (await client.post("/api/login", json={"username": made.username, "password": made.password})).status
    from aiohttp.test_utils import TestClient, TestServer
    import asyncio

    async def main():
        client = TestClient(TestServer(app))
        await client.start_server()
        try:
            return await run(client)
        finally:
            await client.close()
    assert asyncio.run(main()) == 200


def test_start_webview_announces_the_one_time_login_once(store):
    import asyncio
    import socket

    from finsa.dashboards.webview import start_webview
    lines: list[str] = []

    async def main():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        runner = await start_webview(store, port=port, announce=lines.append)
        made = credentials(runner.app)
        await runner.cleanup()
        return made
    made = asyncio.run(main())
    assert len(lines) == 1 and made.password in lines[0] and "/login?token=" in lines[0]


def test_no_secret_reaches_the_logs(store, caplog):
    caplog.set_level(logging.DEBUG)

    async def run(client):
        await client.post("/api/login", json={"username": "rita", "password": "wrong-guess-123"})
        return await login(client, "rita")
    csrf = serve(store, run)
    text = caplog.text
    assert PASSWORD not in text and "wrong-guess-123" not in text and csrf not in text
    assert "scrypt$" not in text


@pytest.mark.parametrize("name", ["users", "auth", "reads"])
def test_docstring_examples(name):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(f"finsa.dashboards.{name}"))
    assert result.attempted > 0 and result.failed == 0
