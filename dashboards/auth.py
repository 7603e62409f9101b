"""Login, sessions, CSRF protection and login throttling for the web view.

* **Sessions** live on the server (:class:`SessionStore`): a random 256-bit token in the
  ``finsa_session`` cookie (HttpOnly, SameSite=Strict, Path=/, Secure over HTTPS), looked up by
  its SHA-256. A session ends at logout, after :data:`SESSION_TTL_S` or after
  :data:`SESSION_IDLE_S` without a request. A login always makes a new token.
* **CSRF**: every state-changing request (anything but GET/HEAD/OPTIONS) must carry the
  session's own CSRF token, in the ``X-CSRF-Token`` header or a ``csrf`` form field, and an
  ``Origin`` header, when sent, must be this origin. The login form uses a double-submit token
  (cookie + hidden field); the JSON login requires ``Content-Type: application/json``, which a
  cross-site form cannot send without a CORS preflight that this server never grants.
* **Throttling** (:class:`LoginThrottle`): after 5 failed logins from one client address,
  further attempts from it get 429 with ``Retry-After`` (a minute, doubling with every further
  failure); after 5 failures on one account, from anywhere, every attempt on it is delayed a
  little (doubling, at most 5 s) but never refused, so failing on purpose cannot lock the real
  user out. Counted in ``finsa_webview_login_throttled_total{by}``. The address is the TCP peer
  (a reverse proxy in front makes every client one address: throttle there too).
* **Sessions per user** are capped (:data:`MAX_SESSIONS_PER_USER`): a user's new login ends that
  user's oldest session, never another user's; the store-wide cap, when reached, refuses the
  new login rather than evicting someone else.
* **Open routes**: ``/login``, ``/api/login``, ``/static/*`` (the page's CSS/JS, nothing from
  the store), ``/healthz`` and ``/metrics`` (for probes and Prometheus: they say nothing about
  any institution). Everything else needs a session: the JSON API answers 401, the page
  redirects to ``/login``.
* **Login links**: :meth:`SessionStore.mint_link` makes a one-time token for a user;
  ``GET /login?token=...`` exchanges it for a session once (for ``finsa run``'s printed link and
  for a headless browser, which cannot type). Unused links expire after an hour.

Nothing here logs a password, a token or a hash; outcomes are counted in metrics only.

>>> sessions = SessionStore()
>>> from finsa.dashboards.users import User, hash_password
>>> rita = User(username="rita", role="regulator", password_hash=hash_password("pw", n=2**10))
>>> token, session = sessions.create(rita)
>>> sessions.get(token).user.username, sessions.get("forged")
('rita', None)
>>> link = sessions.mint_link(rita)
>>> sessions.redeem_link(link).username, sessions.redeem_link(link)
('rita', None)
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable

from finsa.dashboards.users import User
from finsa.metrics import REGISTRY

__all__ = ["SESSION_COOKIE", "LOGIN_CSRF_COOKIE", "CSRF_HEADER", "CSRF_FIELD", "SESSION_TTL_S",
           "SESSION_IDLE_S", "LINK_TTL_S", "MAX_SESSIONS_PER_USER", "Session", "SessionStore", "SessionLimitError",
           "LoginThrottle", "LOGINS", "THROTTLED", "same_token"]

SESSION_COOKIE = "finsa_session"
LOGIN_CSRF_COOKIE = "finsa_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
SESSION_TTL_S = 8 * 3600
SESSION_IDLE_S = 3600
LINK_TTL_S = 3600
#: Live sessions one user may hold (browsers, devices); the oldest ends at the next login.
MAX_SESSIONS_PER_USER = 8

LOGINS = REGISTRY.counter("finsa_webview_logins_total", "Web view login attempts by outcome", ["outcome"])
THROTTLED = REGISTRY.counter("finsa_webview_login_throttled_total",
                             "Web view logins refused with 429, by what hit the limit", ["by"])


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time equality of a submitted token with the expected one (None never matches)."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


class SessionLimitError(Exception):
    """The store-wide session cap is reached (the web view answers 503)."""


@dataclass
class Session:
    """One logged-in browser: who, its CSRF token, when it started and was last used."""

    user: User
    csrf: str
    created_s: float
    seen_s: float


class SessionStore:
    """Server-side sessions and one-time login links, thread-safe (see the module docstring)."""

    def __init__(self, ttl_s: float = SESSION_TTL_S, idle_s: float = SESSION_IDLE_S,
                 max_sessions: int = 10_000, clock: Callable[[], float] = time.monotonic,
                 max_per_user: int = MAX_SESSIONS_PER_USER) -> None:
        if not (ttl_s > 0 and idle_s > 0 and max_sessions > 0 and max_per_user > 0):
            raise ValueError("session lifetimes and the session caps must be positive")
        self.ttl_s, self.idle_s, self.max_sessions, self._clock = ttl_s, idle_s, max_sessions, clock
        self.max_per_user = max_per_user
        self._sessions: dict[str, Session] = {}
        self._links: dict[str, tuple[User, float]] = {}
        self._lock = threading.Lock()

    def create(self, user: User) -> tuple[str, Session]:
        """A new session for ``user``: (cookie token, session)."""
        token, now = secrets.token_urlsafe(32), self._clock()
        session = Session(user, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._prune(now)
            mine = [k for k, s in self._sessions.items() if s.user.username == user.username]
            for key in mine[:max(0, len(mine) - self.max_per_user + 1)]:  # this user's oldest first out
                del self._sessions[key]
            if len(self._sessions) >= self.max_sessions:
                raise SessionLimitError("too many sessions: try again later")
            self._sessions[_digest(token)] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        """The live session of a cookie token (its idle clock restarts), else None."""
        if not token or len(token) > 200:
            return None
        now = self._clock()
        with self._lock:
            session = self._sessions.get(_digest(token))
            if session is None:
                return None
            if now - session.created_s > self.ttl_s or now - session.seen_s > self.idle_s:
                del self._sessions[_digest(token)]
                return None
            session.seen_s = now
            return session

    def drop(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._sessions.pop(_digest(token), None)

    def drop_user(self, username: str) -> int:
        """End every session of ``username`` (after a password change); how many ended."""
        with self._lock:
            gone = [k for k, s in self._sessions.items() if s.user.username == username]
            for key in gone:
                del self._sessions[key]
        return len(gone)

    def __len__(self) -> int:
        with self._lock:
            self._prune(self._clock())
            return len(self._sessions)

    def mint_link(self, user: User, ttl_s: float = LINK_TTL_S) -> str:
        """A one-time login token for ``user`` (``/login?token=...``), valid ``ttl_s``."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._links[_digest(token)] = (user, self._clock() + ttl_s)
        return token

    def redeem_link(self, token: str | None) -> User | None:
        """The user of a login token, once; None when unknown, used or expired."""
        if not token or len(token) > 200:
            return None
        with self._lock:
            found = self._links.pop(_digest(token), None)
        if found is None or found[1] < self._clock():
            return None
        return found[0]

    def _prune(self, now: float) -> None:
        dead = [k for k, s in self._sessions.items()
                if now - s.created_s > self.ttl_s or now - s.seen_s > self.idle_s]
        for key in dead:
            del self._sessions[key]
        for key in [k for k, (_, until) in self._links.items() if until < now]:
            del self._links[key]


class LoginThrottle:
    """Failed logins per key: a client address is refused for a while, an account only slowed.

    * A client address (``addr:...``) with ``limit`` failures waits ``window_s`` after its last
      failure, doubling with every further failure (at most ``max_block_s``): 429 meanwhile.
    * An account (``user:...``) with ``limit`` failures, from anywhere, makes every attempt on it
      wait :meth:`account_delay_s` (doubling, at most ``max_delay_s``) before the password is
      checked, but never refuses it: the real user on a fresh client still logs in, so nobody can
      keep an account out by failing on purpose (issue 15, finding 7).

    Failures are forgotten ``max_block_s`` after they happened.

    >>> t = LoginThrottle(limit=2, window_s=60, clock=lambda: 0.0)
    >>> t.failed("addr:1.2.3.4", "user:rita"); t.failed("addr:1.2.3.4", "user:bob")
    >>> t.retry_after("addr:1.2.3.4") > 0, t.retry_after("user:rita")
    (True, 0.0)
    """

    def __init__(self, limit: int = 5, window_s: float = 60.0, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic, max_block_s: float = 900.0,
                 max_delay_s: float = 5.0) -> None:
        if limit < 1 or window_s <= 0 or max_block_s < window_s or max_delay_s < 0:
            raise ValueError("limit and window must be positive, max_block_s at least the window")
        self.limit, self.window_s, self.max_keys, self._clock = limit, window_s, max_keys, clock
        self.max_block_s, self.max_delay_s = max_block_s, max_delay_s
        self._failures: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, *keys: str) -> float:
        """Seconds until every key may try again (0.0: allowed now)."""
        now, wait = self._clock(), 0.0
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                if times is not None and len(times) >= self.limit:
                    block = min(self.max_block_s, self.window_s * 2 ** (len(times) - self.limit))
                    wait = max(wait, times[-1] + block - now)
        return wait

    def account_delay_s(self, key: str) -> float:
        """How long an attempt on this account waits before its password is checked."""
        with self._lock:
            times = self._recent(key, self._clock())
        if times is None or len(times) < self.limit:
            return 0.0
        return min(self.max_delay_s, 0.25 * 2 ** (len(times) - self.limit))

    def failed(self, *keys: str) -> None:
        """Record one failed attempt against each key."""
        now = self._clock()
        with self._lock:
            if len(self._failures) >= self.max_keys:
                self._evict(now)
            for key in keys:
                times = self._failures.setdefault(key, collections.deque(maxlen=self.limit + 16))
                times.append(now)

    def _recent(self, key: str, now: float) -> collections.deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.max_block_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def _evict(self, now: float) -> None:
        for key in list(self._failures):
            self._recent(key, now)
        while len(self._failures) >= self.max_keys:  # still full: forget the oldest keys
            self._failures.pop(next(iter(self._failures)))
