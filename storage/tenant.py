"""Queries on behalf of a principal: an institution sees its own data, every read is audited.

``TenantView(store, principal)`` is the one way finsa's read paths reach a store for a user
(the web view's panels, ``finsa query --as``). ``principal`` is ``"operator"`` (the person
running finsa: any SQL), ``"regulator"`` (everything, SELECT only) or an institution id.

For an institution the view builds, in process, a database ``<store db>_tenant_<id>`` holding
one view per table of :data:`~finsa.storage.access.ACCESS`, named like the table and filtered
by the access map (``flows AS SELECT ... FROM finsa.flows WHERE institution_id = 'bank-a'``;
ReplacingMergeTree tables are read FINAL inside the view, since FINAL on a view is ignored).
The sector aggregates (``alerts_subsector_1h``, ``alerts_geo_1h``) are k-anonymous views
(:mod:`finsa.storage.kanon`): final numbers over groups of at least ``k`` institutions.
The institution's SQL must pass :mod:`finsa.storage.sqlguard` (one SELECT, unqualified tables or
subqueries only, no table functions, no other database's names, no file or dictionary
functions, no readonly override) and then runs with that database current and ``readonly = 2``.
The regulator's SQL passes the same guard and runs on the store's own database.

Every read -- refused, failed or answered -- lands in ``audit_log`` (:mod:`finsa.storage.audit`),
written before the rows are handed back: a read that cannot be audited is not answered.

>>> from finsa.storage.backend import open_store
>>> store = open_store(); _ = store.migrate()
>>> TenantView(store, "operator").query("SELECT count() FROM audit_log").rows
[(0,)]
>>> store.query("SELECT principal, rows FROM audit_log").rows
[('operator', 1)]
>>> store.close()
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Mapping

from finsa.errors import StorageError

from finsa.storage.access import ACCESS, row_filter
from finsa.storage.audit import AuditEntry, audited_read, institutions_named
from finsa.storage.backend import QueryResult, Store
from finsa.storage.kanon import geo_view_sql, k_anonymity, subsector_view_sql
from finsa.storage.sqlguard import QueryRefused, ast_check, lexical_check, tokens

OPERATOR = "operator"
REGULATOR = "regulator"
_INSTITUTION = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: Statement words that change data: the operator may run them, but never on audit_log.
_WRITES = {"ALTER", "DELETE", "DROP", "TRUNCATE", "INSERT", "RENAME", "EXCHANGE", "OPTIMIZE", "UPDATE",
           "DETACH", "ATTACH", "CREATE", "MOVE"}


def role_of(principal: str) -> str:
    return principal if principal in (OPERATOR, REGULATOR) else "institution"


def tenant_database(store: Store, institution: str) -> str:
    """``<store db>_tenant_<id>`` as a plain identifier ('-' -> '_', plus a short hash of the id
    so that ``bank-a`` and ``bank_a`` stay apart)."""
    tag = hashlib.blake2b(institution.encode(), digest_size=3).hexdigest()
    return f"{store.database}_tenant_{institution.replace('-', '_')}_{tag}"


class TenantView:
    """Audited, tenant-scoped reads of ``store`` for ``principal`` (see the module docstring)."""

    def __init__(self, store: Store, principal: str, k: int | None = None) -> None:
        self.k = k_anonymity(k)
        if principal not in (OPERATOR, REGULATOR) and not _INSTITUTION.match(principal):
            raise StorageError(f"not a principal: {principal!r} (operator, regulator or an institution id)")
        self.store, self.principal, self.role = store, principal, role_of(principal)
        known = store.query("SELECT id, subsector, region FROM institutions").rows
        self._institutions = {row[0]: row for row in known}
        self.database = store.database
        if self.role == "institution":
            if principal not in self._institutions:
                raise StorageError(f"unknown institution {principal!r}: load the registry first")
            self.database = tenant_database(store, principal)
            self._build_views()

    # --- reads ------------------------------------------------------------------------------
    def query(self, sql: str, parameters: Mapping[str, Any] | None = None, action: str = "query") -> QueryResult:
        """Run ad-hoc SQL for the principal (``action``: query or export); audited."""
        return self._audited(action, sql, sql, dict(parameters or {}))

    def panel(self, panel_id: str, sql: str, parameters: Mapping[str, Any] | None = None) -> QueryResult:
        """Run a panel's fixed SQL; audited under the panel id. The same guard applies."""
        return self._audited("panel", panel_id, sql, dict(parameters or {}))

    def _audited(self, action: str, statement: str, sql: str, parameters: dict) -> QueryResult:
        entry = AuditEntry(self.principal, self.role, action, statement, parameters, self._reached(sql, parameters))
        return audited_read(self.store, entry, lambda: self._run(sql, parameters))

    def _reached(self, sql: str, parameters: dict) -> list[str]:
        if self.role == "institution":
            return [self.principal]
        return sorted(institutions_named(sql, parameters, self._institutions))

    def _run(self, sql: str, parameters: dict) -> QueryResult:
        if self.role == OPERATOR:
            _refuse_audit_writes(sql)
            return self.store.query(sql, parameters)
        statement = lexical_check(sql)
        databases = self._databases()
        ast_check(statement, lambda text: self._explain(text, parameters), databases)
        return self.store.query_in(self.database, _readonly(statement), parameters)

    def _explain(self, text: str, parameters: dict) -> list[str]:
        # EXPLAIN as a subquery: both backends return it as rows of one String column
        result = self.store.query_in(self.database, f"SELECT explain FROM ({text}\n)", parameters)
        return [row[0] for row in result.rows]

    def _databases(self) -> set[str]:
        names = {row[0] for row in self.store.query("SELECT name FROM system.databases").rows}
        return names | {"system", "information_schema", "default"}

    # --- the tenant's database ---------------------------------------------------------------
    def _build_views(self) -> None:
        """(Re)create the tenant database: exactly one view per table the access map lists."""
        _, subsector, region = self._institutions[self.principal]
        columns = self._columns()
        db = f"`{self.database}`"
        with self.store._lock:
            self.store.command(f"DROP DATABASE IF EXISTS {db} SYNC")
            self.store.command(f"CREATE DATABASE {db}")
            for access in ACCESS:
                shown = [c for c in columns.get(access.table, []) if c not in access.hidden]
                if not shown:
                    continue  # table not created yet (store not migrated)
                k_view = self._k_anonymous(access.table)
                if k_view:
                    self.store.command(f"CREATE VIEW {db}.`{access.table}` AS {k_view}")
                    continue
                where = row_filter(access, self.principal, subsector, region)
                self.store.command(
                    f"CREATE VIEW {db}.`{access.table}` AS SELECT {', '.join(f'`{c}`' for c in shown)} "
                    f"FROM {self.store.database}.`{access.table}`{' FINAL' if access.final else ''}"
                    f"{' WHERE ' + where if where else ''}")

    def _k_anonymous(self, table: str) -> str:
        """The k-anonymous SELECT of a sector aggregate table ('' for other tables)."""
        if table == "alerts_subsector_1h":
            pairs = [(row[1], row[2]) for row in self._institutions.values()]
            return subsector_view_sql(self.store.database, pairs, self.k)
        if table == "alerts_geo_1h":
            return geo_view_sql(self.store.database, self.k)
        return ""

    def _columns(self) -> dict[str, list[str]]:
        rows = self.store.query("SELECT table, name FROM system.columns WHERE database = currentDatabase() "
                                "ORDER BY table, position").rows
        out: dict[str, list[str]] = {}
        for table, name in rows:
            out.setdefault(table, []).append(name)
        return out


def _readonly(sql: str) -> str:
    """``sql`` with ``readonly = 2`` added to its outer SETTINGS clause (or a new one)."""
    depth, outer_settings = 0, False
    for kind, text in tokens(sql):
        depth += {"(": 1, ")": -1}.get(text, 0) if kind == "other" else 0
        if kind == "word" and depth == 0:
            if text.upper() == "SETTINGS":
                outer_settings = True
            elif text.upper() in ("UNION", "EXCEPT", "INTERSECT") and outer_settings:
                raise QueryRefused("SETTINGS before UNION: put it at the end")
    return f"{sql}\n, readonly = 2" if outer_settings else f"{sql}\nSETTINGS readonly = 2"


def _refuse_audit_writes(sql: str) -> None:
    toks = tokens(sql)
    words = {text.upper() for kind, text in toks if kind in ("word", "quoted")}
    names = {text.strip('`"').lower() for kind, text in toks if kind in ("word", "quoted")}
    if ("audit_log" in names or "DATABASE" in words) and words & _WRITES:
        raise QueryRefused("audit_log is append-only: finsa does not change or delete it (nor its database)")
