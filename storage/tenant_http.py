"""The ClickHouse HTTP interface of an embedded store, read-only and per tenant (for Grafana).

Grafana's ClickHouse data source (grafana-clickhouse-datasource, HTTP protocol mode, through
clickhouse-go) sends ``POST /?database=D&default_format=Native[&setting=...][&query_id=...]``
with Basic auth and the SQL in the body (macros and variables already expanded), first
``SELECT timeZone()``. :class:`TenantHTTPEndpoint` answers exactly that, and nothing that writes:

* each user is a **principal** -- ``regulator`` or an institution id -- with its own password
  (:func:`tenant_credentials`: random, made on first use, one 0600 file each);
* every statement passes the same guard as ``finsa query --as`` (:mod:`finsa.storage.sqlguard`:
  one SELECT, no table functions, no other database, no file or dictionary functions); an
  institution's statement runs in its tenant database (:mod:`finsa.storage.tenant`), whose views
  hold its own rows only (the sector roll-ups k-anonymous, as final numbers: a dashboard query
  merging their sketch states is read over those numbers, :func:`~finsa.storage.kanon.over_final_numbers`);
  everything runs with ``readonly = 2``;
* URL settings outside :data:`~finsa.storage.sqlguard.ALLOWED_SETTINGS` are dropped (Grafana
  sends a few harmless ones); ``param_<name>`` parameters are bound server-side;
* every request -- answered, refused or failed -- is in ``audit_log`` (action ``query``, the
  principal, the statement).

>>> from finsa.storage.backend import open_store
>>> store = open_store(); _ = store.migrate()
>>> endpoint = TenantHTTPEndpoint(store, {"finsa_regulator": ("regulator", "pw")}).start()
>>> import urllib.request, base64
>>> request = urllib.request.Request(endpoint.url + "/?default_format=TSV", data=b"SELECT 40+2",
...     headers={"Authorization": "Basic " + base64.b64encode(b"finsa_regulator:pw").decode()})
>>> urllib.request.urlopen(request).read()
b'42\\n'
>>> endpoint.stop(); store.close()
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from finsa.errors import StorageError
from finsa.metrics import REGISTRY

from finsa.storage.audit import AuditEntry
from finsa.storage.kanon import over_final_numbers
from finsa.storage.clickhouse_http import ClickHouseHTTPEndpoint, _failure, _QueryFailed, _settings_in_query
from finsa.storage.sqlguard import ALLOWED_SETTINGS, QueryRefused, ast_check, lexical_check
from finsa.storage.tenant import TenantView, _readonly

__all__ = ["TenantHTTPEndpoint", "tenant_credentials"]

DROPPED = REGISTRY.counter("finsa_storage_http_settings_dropped_total",
                           "URL settings a tenant's HTTP request asked for and did not get", ["setting"])
_USER = re.compile(r"^finsa_[a-z0-9_-]{1,63}$")


def tenant_credentials(directory: Path, principals: Iterable[str]) -> dict[str, tuple[str, str]]:
    """``{user: (principal, password)}`` for the regulator and each institution: user
    ``finsa_<principal>``, password in ``directory/<user>.password`` (0600), made on first use."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for principal in dict.fromkeys(["regulator", *principals]):
        user = f"finsa_{principal}"
        path = directory / f"{user}.password"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(24) + "\n")
            path.chmod(0o600)
        out[user] = (principal, path.read_text().strip())
    return out


class TenantHTTPEndpoint(ClickHouseHTTPEndpoint):
    """Read-only, per-tenant ClickHouse HTTP interface of ``store`` (see the module docstring).

    ``users``: ``{user: (principal, password)}``. ``view_for``: the principal's TenantView (share
    the web view's, so both do not rebuild the same tenant database); default: cached here.
    """

    def __init__(self, store: Any, users: dict[str, tuple[str, str]], host: str = "127.0.0.1", port: int = 0,
                 view_for: Callable[[str], TenantView] | None = None, rebuild_s: float = 60.0) -> None:
        super().__init__(store, host, port, credentials=None)
        bad = [u for u, (p, _) in users.items() if p == "operator" or not _USER.match(u)]
        if bad:
            raise StorageError(f"not tenant users (finsa_<principal>, never the operator): {', '.join(sorted(bad))}")
        self.users = dict(users)
        self._view_for = view_for or self._cached_view
        self._views: dict[str, tuple[TenantView, float]] = {}
        self._views_lock = threading.Lock()
        self.rebuild_s = rebuild_s

    def authenticate(self, user: str, password: str) -> str | None:
        known = self.users.get(user)
        expected = known[1] if known else secrets.token_urlsafe(24)  # same work for unknown users
        ok = hmac.compare_digest(password.encode("utf-8", "replace"), expected.encode())
        return known[0] if ok and known else None

    def _cached_view(self, principal: str) -> TenantView:
        with self._views_lock:
            cached = self._views.get(principal)
            if cached is None or time.monotonic() - cached[1] > self.rebuild_s:
                cached = (TenantView(self.store, principal), time.monotonic())
                self._views[principal] = cached
            return cached[0]

    def execute(self, params: dict[str, str], body: bytes, principal: str = "") -> tuple[bytes, dict[str, str]]:
        query = params.get("query", "")
        sql = (query + "\n" + body.decode("utf-8", "replace")) if query and body else (query or body.decode("utf-8", "replace"))
        settings = {}
        for name, value in params.items():
            if name in ALLOWED_SETTINGS:
                settings[name] = value
            elif not name.startswith("param_") and name not in ("query", "database", "default_format", "query_id",
                                                                "user", "password", "compress", "decompress"):
                DROPPED.inc(setting=name[:40])
        bind = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        view = self._view_for(principal)
        if view.role == "institution":  # its k-anonymous views hold final numbers, not sketch states
            sql = over_final_numbers(sql)
        entry = AuditEntry(principal, view.role, "query", sql, bind, view._reached(sql, bind))
        started = time.monotonic()
        try:
            result = self._guarded_select(view, sql, params, settings, bind)
        except _QueryFailed as exc:
            entry.outcome, entry.error = ("refused" if exc.code == 164 else "error"), str(exc)
            raise
        finally:
            entry.elapsed_ms = int((time.monotonic() - started) * 1000)
            self.store.audit(entry)
        return result

    def _guarded_select(self, view: TenantView, sql: str, params: dict[str, str], settings: dict[str, str],
                        bind: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        try:
            statement = lexical_check(sql.strip().rstrip(";"))
            ast_check(statement, lambda text: view._explain(text, bind), view._databases())
        except QueryRefused as exc:
            raise _QueryFailed(f"Code: 164. DB::Exception: finsa: {exc}. (READONLY)", 164) from None
        except Exception as exc:  # noqa: BLE001 - a statement ClickHouse cannot parse: its own message
            raise _failure(exc) from None
        statement = _readonly(_settings_in_query(statement, settings) or statement)
        fmt = params.get("default_format") or "TabSeparated"
        headers = {"X-ClickHouse-Query-Id": params.get("query_id") or "", "X-ClickHouse-Format": fmt}
        with self.store.lock:
            session = self.store.session
            try:
                session.query(f"USE `{view.database}`", "TSV")
                return self._select(session, statement, fmt, bind, {}, headers)
            except Exception as exc:  # noqa: BLE001 - the engine's error goes back to the client
                raise _failure(exc) from None
            finally:
                session.query(f"USE `{self.store.database}`", "TSV")
