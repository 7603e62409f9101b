"""The web view's login routes and the middleware that guards every other route.

Routes (policy in :mod:`finsa.dashboards.auth`):

- ``GET /login``: the login form (with a double-submit CSRF token); ``GET /login?token=...``
  exchanges a one-time login link for a session and redirects to ``/``.
- ``POST /login``: the form's username, password and ``csrf``; 303 to ``/`` or the form again
  with 401; 429 when throttled.
- ``POST /api/login``: JSON ``{"username", "password"}``; answers the user, role, institution and
  the session's CSRF token (send it back as ``X-CSRF-Token`` on POSTs).
- ``GET /api/session``: who is logged in, and the CSRF token.
- ``POST /logout`` (form field ``csrf``) and ``POST /api/logout`` (header): end the session.

:func:`guard` is the middleware: open routes pass, the rest need a live session (401 JSON under
``/api/``, a redirect to ``/login`` otherwise) and state-changing requests need the CSRF token.
"""

from __future__ import annotations

import asyncio
import html
import json
import secrets
from dataclasses import dataclass, field
from string import Template
from typing import Awaitable, Callable

from aiohttp import web

from finsa.dashboards.auth import (CSRF_FIELD, CSRF_HEADER, LOGIN_CSRF_COOKIE, LOGINS, SESSION_COOKIE, THROTTLED,
                                   LoginThrottle, Session, SessionLimitError, SessionStore, same_token)
from finsa.dashboards.users import User, Users

__all__ = ["Auth", "AUTH", "guard", "add_routes", "session_of", "login_link", "OPEN_PATHS", "security_headers"]

#: Paths served without a session (``/static/`` too: the page's own CSS and JS).
OPEN_PATHS = frozenset({"/login", "/api/login", "/healthz", "/metrics"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SESSION = web.RequestKey("session", Session)
_MAX_FIELD = 256  # longest username or password looked at


@dataclass
class Auth:
    """Who may log in and the live sessions; ``secure_cookies`` None: Secure over HTTPS only."""

    users: Users
    sessions: SessionStore = field(default_factory=SessionStore)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    secure_cookies: bool | None = None
    title: str = "finsa"


AUTH = web.AppKey("auth", Auth)


def session_of(request: web.Request) -> Session:
    """The request's session (the guard has checked it)."""
    return request[_SESSION]


def login_link(app: web.Application, username: str) -> str:
    """A one-time ``/login?token=...`` path logging ``username`` in (KeyError: no such user)."""
    user = app[AUTH].users.get(username)
    if user is None:
        raise KeyError(username)
    return "/login?token=" + app[AUTH].sessions.mint_link(user)


def _origin_ok(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


def _cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int,
            path: str = "/") -> None:
    secure = request.app[AUTH].secure_cookies
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True, samesite="Strict",
                        secure=request.secure if secure is None else secure)


def _start_session(request: web.Request, user: User, response: web.StreamResponse) -> Session:
    sessions = request.app[AUTH].sessions
    sessions.drop(request.cookies.get(SESSION_COOKIE))  # never keep a token from before the login
    try:
        token, session = sessions.create(user)
    except SessionLimitError:
        raise web.HTTPServiceUnavailable(text="too many sessions: try again later") from None
    _cookie(request, response, SESSION_COOKIE, token, int(sessions.ttl_s))
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return session


def _deny(request: web.Request, status: int, message: str) -> web.Response:
    if request.path.startswith("/api/"):
        return web.json_response({"error": message}, status=status)
    return web.Response(status=status, text=message, content_type="text/plain")


@web.middleware
async def guard(request: web.Request,
                handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Sessions and CSRF for every route but the open ones (see the module docstring)."""
    changing = request.method not in _SAFE_METHODS
    if changing and not _origin_ok(request):
        return _deny(request, 403, "cross-origin request refused")
    if request.path in OPEN_PATHS or request.path.startswith("/static/"):
        return await handler(request)
    session = request.app[AUTH].sessions.get(request.cookies.get(SESSION_COOKIE))
    if session is None:
        if request.path.startswith("/api/") or changing:
            return _deny(request, 401, "log in first")
        raise web.HTTPSeeOther("/login")
    if changing:
        given = request.headers.get(CSRF_HEADER)
        if given is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            value = (await request.post()).get(CSRF_FIELD)
            given = value if isinstance(value, str) else None
        if not same_token(given, session.csrf):
            return _deny(request, 403, "missing or wrong CSRF token")
    request[_SESSION] = session
    return await handler(request)


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


async def _attempt(request: web.Request, username: str, password: str) -> tuple[User | None, float]:
    """(user or None, retry-after seconds: > 0 when this client is throttled). An account with
    recent failures is only slowed down: the right password from a fresh client still logs in."""
    a = request.app[AUTH]
    addr, account = f"addr:{_client(request)}", f"user:{username[:_MAX_FIELD]}"
    wait = a.throttle.retry_after(addr)
    if wait > 0:
        THROTTLED.inc(by="address")
        LOGINS.inc(outcome="throttled")
        return None, wait
    delay = a.throttle.account_delay_s(account)
    if delay > 0:
        THROTTLED.inc(by="account_delay")
        await asyncio.sleep(delay)
    user = None
    if 0 < len(username) <= _MAX_FIELD and 0 < len(password) <= _MAX_FIELD:
        user = a.users.authenticate(username, password)
    if user is None:
        a.throttle.failed(addr, account)
        LOGINS.inc(outcome="failed")
    else:
        LOGINS.inc(outcome="ok")
    return user, 0.0


def _form(request: web.Request, status: int, message: str = "") -> web.Response:
    from finsa.dashboards.page import PAGE_HEADERS, template

    token = secrets.token_urlsafe(24)
    text = Template(template("login.html")).substitute(
        title=html.escape(request.app[AUTH].title), csrf=token, message=html.escape(message),
        message_class="message" if message else "message hidden")
    response = web.Response(status=status, text=text, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)
    _cookie(request, response, LOGIN_CSRF_COOKIE, token, 3600, path="/login")
    return response


async def _login_page(request: web.Request) -> web.StreamResponse:
    if "token" in request.query:
        user = request.app[AUTH].sessions.redeem_link(request.query.get("token"))
        if user is None:
            LOGINS.inc(outcome="bad_link")
            return _form(request, 401, "This login link is not valid any more.")
        LOGINS.inc(outcome="link")
        response = web.HTTPSeeOther("/", headers={"Referrer-Policy": "no-referrer"})
        _start_session(request, user, response)
        raise response
    if request.app[AUTH].sessions.get(request.cookies.get(SESSION_COOKIE)) is not None:
        raise web.HTTPSeeOther("/")
    return _form(request, 200)


async def _login_form(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    fields = {k: form.get(k) for k in ("username", "password", CSRF_FIELD)}
    if not all(isinstance(v, str) for v in fields.values()):
        return _form(request, 400, "Fill in the username and the password.")
    if not same_token(str(fields[CSRF_FIELD]), request.cookies.get(LOGIN_CSRF_COOKIE, "")):
        return _form(request, 403, "The form expired: try again.")
    user, wait = await _attempt(request, str(fields["username"]), str(fields["password"]))
    if wait > 0:
        response = _form(request, 429, "Too many failed logins: wait a minute.")
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    if user is None:
        return _form(request, 401, "Wrong username or password.")
    response = web.HTTPSeeOther("/")
    _start_session(request, user, response)
    raise response


def _whoami(session: Session) -> dict[str, str]:
    u = session.user
    return {"user": u.username, "role": u.role, "institution": u.institution, "csrf": session.csrf}


async def _login_json(request: web.Request) -> web.Response:
    if request.content_type != "application/json":
        return web.json_response({"error": "send JSON (Content-Type: application/json)"}, status=415)
    try:
        body = json.loads(await request.text())
    except (ValueError, UnicodeDecodeError):
        return web.json_response({"error": "not JSON"}, status=400)
    if not (isinstance(body, dict) and isinstance(body.get("username"), str)
            and isinstance(body.get("password"), str)):
        return web.json_response({"error": "need username and password strings"}, status=400)
    user, wait = await _attempt(request, body["username"], body["password"])
    if wait > 0:
        return web.json_response({"error": "too many failed logins"}, status=429,
                                 headers={"Retry-After": str(int(wait) + 1)})
    if user is None:
        return web.json_response({"error": "wrong username or password"}, status=401)
    response = web.json_response({})
    session = _start_session(request, user, response)
    response.text = json.dumps(_whoami(session))
    return response


async def _session(request: web.Request) -> web.Response:
    return web.json_response(_whoami(session_of(request)), headers={"Cache-Control": "no-store"})


async def _logout(request: web.Request) -> web.StreamResponse:
    request.app[AUTH].sessions.drop(request.cookies.get(SESSION_COOKIE))
    response: web.StreamResponse
    response = web.json_response({"status": "logged out"}) if request.path.startswith("/api/") \
        else web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    if isinstance(response, web.HTTPException):
        raise response
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", _login_page)
    app.router.add_post("/login", _login_form)
    app.router.add_post("/api/login", _login_json)
    app.router.add_get("/api/session", _session)
    app.router.add_post("/logout", _logout)
    app.router.add_post("/api/logout", _logout)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` (issue 15, finding 12): the pages' headers
    (:data:`~finsa.dashboards.page.PAGE_HEADERS`: nosniff, a CSP, no framing, no referrer) on every
    response, error pages and redirects included, a handler's own values winning; and
    ``Cache-Control: no-store`` on every response but the page's own static files."""
    from finsa.dashboards.page import PAGE_HEADERS

    for name, value in PAGE_HEADERS.items():
        if name != "Cache-Control":
            response.headers.setdefault(name, value)
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
