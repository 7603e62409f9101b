"""Who may read what: one access map, enforced two ways.

Each table of the store is in :data:`ACCESS` with a scope:

* ``own``: an institution reads the rows its ``filter`` selects (flows, alerts, heartbeats and
  their per-institution roll-ups: ``institution_id = <id>``; campaigns that hit it; warnings
  addressed to it, its subsector, its region or the sector; threat levels of its own or of a
  wider scope; its own audit rows and the regulator's reads of it alone);
* ``shared``: sector-wide aggregates every institution reads in full (``alerts_geo_1h``,
  ``alerts_subsector_1h``, ``ip_enrichment``, ``institutions`` without other institutions'
  address ranges);
* not listed (the batch ledger, migrations, views, the dictionary): the regulator only.

A table missing from the map is invisible to institutions (fail closed). ``hidden`` columns are
never shown to institutions. The regulator and the operator see everything.

The map is enforced on a ClickHouse server by roles, GRANTs and ROW POLICYs
(:func:`tenant_sql`, ``finsa storage tenants``) and in process by per-tenant views
(:mod:`finsa.storage.tenant`), both derived from it. The sector aggregates with k-anonymous
views (:data:`K_VIEWS`) are never granted raw: on a server an institution reads them from
``<db>_shared``, views that run as a definer without login and show final numbers over groups
of at least k institutions (:mod:`finsa.storage.kanon`).

>>> row_filter(ACCESS_BY_TABLE["flows"], "bank-a", "bank", "north")
"institution_id = 'bank-a'"
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Iterable

from finsa.storage.kanon import geo_view_sql, k_anonymity, subsector_view_sql
from finsa.storage.schema import INSTITUTION_COLUMNS, _quote
from finsa.storage.sector_schema import sector_columns

#: Shared tables an institution reads only through a k-anonymous view.
K_VIEWS = ("alerts_subsector_1h", "alerts_geo_1h")
#: The definer of the k-anonymous views on a server (no password, no host: nobody logs in as it).
K_DEFINER = "finsa_kviews"
REGULATOR_ROLE = "finsa_regulator"
OPERATOR_ROLE = "finsa_operator"


@dataclass(frozen=True)
class TableAccess:
    """How institutions may read ``table`` (see the module docstring)."""

    table: str
    scope: str  # "own" or "shared"
    filter: str = ""  # SQL with {institution}, {subsector}, {region} placeholders (quoted literals)
    hidden: tuple[str, ...] = ()
    final: bool = False  # ReplacingMergeTree: tenant views read it FINAL (FINAL on a view is ignored)


_OWN = "institution_id = {institution}"
ACCESS: tuple[TableAccess, ...] = (
    TableAccess("flows", "own", _OWN),
    TableAccess("alerts", "own", _OWN, final=True),
    TableAccess("heartbeats", "own", _OWN),
    TableAccess("arp_bindings", "own", _OWN),
    TableAccess("flows_1m", "own", _OWN),
    TableAccess("flows_1h", "own", _OWN),
    TableAccess("alerts_1m", "own", _OWN),
    TableAccess("alerts_1h", "own", _OWN),
    TableAccess("talkers_top_1h", "own", _OWN),
    TableAccess("talkers_top_1d", "own", _OWN),
    TableAccess("services_1h", "own", _OWN),
    TableAccess("ingest_lag_1m", "own", _OWN),
    TableAccess("campaigns", "own", "has(JSONExtract(institutions, 'Array(String)'), {institution})",
                hidden=("institutions",), final=True),
    TableAccess("warnings", "own", "scope_kind = 'sector' OR (scope_kind = 'institution' AND scope_id = {institution})"
                " OR (scope_kind = 'subsector' AND scope_id = {subsector})"
                " OR (scope_kind = 'region' AND scope_id = {region})", final=True),
    TableAccess("threat_levels", "own", "scope_kind != 'institution' OR scope_id = {institution}"),
    TableAccess("emergencies", "own", _OWN),
    TableAccess("audit_log", "own", "principal = {institution} OR (role = 'regulator' AND institutions = [{institution}])"),
    TableAccess("triage_events", "own", _OWN),
    TableAccess("cases", "own", _OWN),
    TableAccess("allowlist_entries", "own", _OWN),
    TableAccess("alerts_geo_1h", "shared"),
    TableAccess("alerts_subsector_1h", "shared"),
    TableAccess("ip_enrichment", "shared"),
    TableAccess("institutions", "shared", hidden=("networks",)),
)
ACCESS_BY_TABLE = {a.table: a for a in ACCESS}
#: Tables only the regulator (and the operator) read.
REGULATOR_ONLY = ("ingested_batches", "schema_migrations")


def row_filter(access: TableAccess, institution: str, subsector: str = "", region: str = "") -> str:
    """The access's filter for one institution, literals quoted ('' when it has none)."""
    return access.filter.format(institution=_quote(institution), subsector=_quote(subsector),
                                region=_quote(region))


def institution_role(institution: str) -> str:
    return f"finsa_institution_{institution}"


def _name(identifier: str) -> str:
    return f"`{identifier}`"  # ids are [a-z0-9_-]: safe between backquotes


@dataclass
class TenantSQL:
    """The statements to apply and the passwords of the users they create (never printed)."""

    statements: list[str]
    passwords: dict[str, str]


def tenant_sql(institutions: Iterable[Any], database: str = "finsa",
               columns: dict[str, list[str]] | None = None, k: int | None = None) -> TenantSQL:
    """Roles, users, GRANTs and ROW POLICYs for a ClickHouse server.

    ``institutions`` have ``id``, ``subsector`` and ``region`` (registry entries). ``columns``
    (table -> column names, default: derived from the schema) lets a table with ``hidden``
    columns be granted column by column. Users get random passwords, stored
    as SHA-256 hashes in the SQL; the clear passwords are returned apart.
    """
    if columns is None:
        columns = {"institutions": [c.name for c in INSTITUTION_COLUMNS],
                   "campaigns": [c.name for c in sector_columns("campaigns")]}
    db = _name(database)
    out = [f"CREATE ROLE IF NOT EXISTS {REGULATOR_ROLE}", f"CREATE ROLE IF NOT EXISTS {OPERATOR_ROLE}",
           f"GRANT SELECT ON {db}.* TO {REGULATOR_ROLE}", f"GRANT ALL ON {db}.* TO {OPERATOR_ROLE}"]
    passwords = {}
    insts = list(institutions)
    out += k_view_sql(insts, database, k_anonymity(k))
    shared = _name(f"{database}_shared")
    for inst in insts:
        role = _name(institution_role(inst.id))
        out.append(f"CREATE ROLE IF NOT EXISTS {role}")
        for access in ACCESS:
            if access.table in K_VIEWS:
                out.append(f"GRANT SELECT ON {shared}.{_name(access.table)} TO {role}")
            else:
                out.extend(_grants(access, db, role, columns))
    for access in ACCESS:
        if access.scope != "own":
            continue
        table = f"{db}.{_name(access.table)}"
        # Once a table has a row policy, a user without a permissive one sees nothing.
        out.append(f"CREATE ROW POLICY OR REPLACE finsa_all ON {table} USING 1 TO {REGULATOR_ROLE}, {OPERATOR_ROLE}")
        for inst in insts:
            condition = row_filter(access, inst.id, inst.subsector, inst.region)
            out.append(f"CREATE ROW POLICY OR REPLACE {_name('finsa_' + inst.id)} ON {table} "
                       f"USING {condition} TO {_name(institution_role(inst.id))}")
    for user, role in [("finsa_regulator", REGULATOR_ROLE)] + [(f"finsa_{i.id}", institution_role(i.id)) for i in insts]:
        passwords[user] = secrets.token_urlsafe(18)
        digest = hashlib.sha256(passwords[user].encode()).hexdigest()
        out.append(f"CREATE USER IF NOT EXISTS {_name(user)} IDENTIFIED WITH sha256_hash BY '{digest}' "
                   f"DEFAULT DATABASE {db}")
        out.append(f"GRANT {_name(role)} TO {_name(user)}")
        out.append(f"ALTER USER {_name(user)} DEFAULT ROLE {_name(role)} SETTINGS readonly = 2")
    return TenantSQL(out, passwords)


def k_view_sql(institutions: list[Any], database: str, k: int) -> list[str]:
    """The ``<db>_shared`` database of k-anonymous views, run as :data:`K_DEFINER` (re-run after
    a registry change: the groups follow the registry)."""
    db, shared, definer = _name(database), _name(f"{database}_shared"), _name(K_DEFINER)
    pairs = [(i.subsector, i.region) for i in institutions]
    views = {"alerts_subsector_1h": subsector_view_sql(db, pairs, k), "alerts_geo_1h": geo_view_sql(db, k)}
    out = [f"CREATE USER IF NOT EXISTS {definer} IDENTIFIED WITH no_password HOST NONE",
           *(f"GRANT SELECT ON {db}.{_name(t)} TO {definer}" for t in K_VIEWS),
           f"CREATE DATABASE IF NOT EXISTS {shared}"]
    for table, select in views.items():
        out.append(f"CREATE OR REPLACE VIEW {shared}.{_name(table)} DEFINER = {definer} SQL SECURITY DEFINER "
                   f"AS {select}")
    return out


def _grants(access: TableAccess, db: str, role: str, columns: dict[str, list[str]] | None) -> list[str]:
    table = f"{db}.{_name(access.table)}"
    if not access.hidden:
        return [f"GRANT SELECT ON {table} TO {role}"]
    if columns is None or access.table not in columns:
        return []
    shown = [c for c in columns[access.table] if c not in access.hidden]
    return [f"GRANT SELECT({', '.join(_name(c) for c in shown)}) ON {table} TO {role}"]
