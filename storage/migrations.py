"""Versioned, idempotent, self-checking schema migrations (run by ``Store.migrate()``).

Each step looks at the store (``system.tables``, ``system.columns``) and applies itself only
when what it creates is missing, so migrating twice, or a store half-migrated by a crash, is
safe. Applied steps are recorded in ``schema_migrations``.

Two kinds of steps:

* numbered steps creating the tables (``0002_create_flows`` ...), from :mod:`finsa.storage.schema`
  and :mod:`finsa.storage.rollups`;
* column steps, derived at run time: the columns a wire record type implies
  (:func:`finsa.storage.schema.derived_columns`) are compared with ``system.columns`` and each
  missing one becomes ``add_column:<table>.<column>`` (``ALTER TABLE ... ADD COLUMN``). Adding a
  field to a wire record therefore needs no hand-written migration: the next ``migrate()`` adds
  the column to existing stores, placed after its predecessor; existing rows read the default.

Last, single-node upgrades (not part of the cluster DDL): the distinct-count roll-ups of an
older store are rebuilt with today's sketch (``sketch:<roll-up>``, :mod:`finsa.storage.resketch`),
a cascaded roll-up new to a store is filled from its source roll-up (``fill:<roll-up>``,
:func:`cascade_fill_step`), ``flows_1h``'s view becomes a cascade of ``flows_1m``
(``cascade:flows_1h``, :func:`flows_1h_cascade_step`), and a flow roll-up added to a store that already held flows is
backfilled from them (``backfill:<roll-up>``, :func:`backfill_step`), and the view of a
superseded roll-up is dropped (``retire:<roll-up>``, :func:`retire_view_step`).

>>> [s.version for s in table_steps()][:3]
['0001_create_schema_migrations', '0002_create_flows', '0003_create_alerts']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from finsa.storage import rollups, schema
from finsa.storage.resketch import resketch_steps
from finsa.storage.audit import audit_log_ddl
from finsa.storage.schema import DEFAULT_TTL_DAYS, RECORD_OF_TABLE, Column
from finsa.storage.sector_schema import sector_ddl
from finsa.storage import search_index, triage


@dataclass(frozen=True)
class Step:
    """One migration step: ``needed(store)`` says whether ``apply(store)`` must run."""

    version: str
    description: str
    needed: Callable[[Any], bool]
    apply: Callable[[Any], None]


@dataclass
class MigrationReport:
    applied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def table_exists(store: Any, table: str) -> bool:
    result = store._run_query("SELECT count() FROM system.tables WHERE database = currentDatabase() "
                              "AND name = {table:String}", {"table": table})
    return bool(result.rows[0][0])


def existing_columns(store: Any, table: str) -> list[str]:
    """Column names of ``table`` in table order (empty when the table does not exist)."""
    result = store._run_query("SELECT name FROM system.columns WHERE database = currentDatabase() "
                              "AND table = {table:String} ORDER BY position", {"table": table})
    return [row[0] for row in result.rows]


def _create(version: str, table: str, ddl: Callable[[], str]) -> Step:
    return Step(version, f"create {table}", lambda store: not table_exists(store, table),
                lambda store: store._run_command(ddl()))


def _flows_1m_sources(version: str) -> Step:
    """Stores made before flows_1m had ``sources``: add the column and re-create its view."""
    def apply(store: Any) -> None:
        store._run_command(f"ALTER TABLE flows_1m ADD COLUMN IF NOT EXISTS sources {schema.DISTINCT_IP_TYPE} "
                           f"COMMENT 'Distinct source addresses (approx.): {schema.DISTINCT_MERGE}(sources)'")
        store._run_command(f"ALTER TABLE flows_1m ADD COLUMN IF NOT EXISTS {schema.ROLLUP_STORED_AT}")
        store._run_command("DROP VIEW IF EXISTS flows_1m_mv")
        store._run_command(schema.flows_1m_view_ddl())

    return Step(version, "add sources to flows_1m", lambda store: "sources" not in existing_columns(store, "flows_1m"),
                apply)


def _view_created(store: Any, view: str) -> Any:
    rows = store._run_query("SELECT metadata_modification_time FROM system.tables "
                            "WHERE database = currentDatabase() AND name = {v:String}", {"v": view}).rows
    return rows[0][0] if rows else None


def _recorded(store: Any, version: str) -> bool:
    result = store._run_query("SELECT count() FROM schema_migrations WHERE version = {v:String}", {"v": version})
    return bool(result.rows[0][0])


def _older_flows(view: str) -> str:
    """SQL condition: flows stored before ``view`` existed (its view never saw them)."""
    return ("stored_at < (SELECT metadata_modification_time FROM system.tables "
            f"WHERE database = currentDatabase() AND name = '{view}')")


def backfill_step(name: str, version: str = "") -> Step:
    """Roll up into ``name`` the flows stored before its view was created (an older store).

    Needed once (recorded), and only when such flows exist: a fresh store skips it. Flows stored
    in the second the view was created are not backfilled (never counted twice: the view
    counted those written after it). One day (partition of ``flows``) per INSERT bounds memory;
    the rows keep their flows' storage time, so their TTL counts from it.
    """
    version, view = version or f"backfill:{name}", f"{name}_mv"

    def needed(store: Any) -> bool:
        if _view_created(store, view) is None or _recorded(store, version):
            return False
        rows = store._run_query(f"SELECT count() FROM flows WHERE {_older_flows(view)}", {}).rows
        return bool(rows[0][0])

    def apply(store: Any) -> None:
        older = _older_flows(view)
        days = store._run_query(f"SELECT DISTINCT toString(toDate(first_seen)) AS d FROM flows WHERE {older} "
                                "ORDER BY d", {}).rows
        columns = ", ".join(rollups.flow_rollup_columns(name) + ["stored_at"])
        for (day,) in days:  # 'YYYY-MM-DD' from the engine: safe to inline
            where = f"toDate(first_seen) = '{day}' AND {older}"
            store._run_command(f"INSERT INTO {name} ({columns}) {rollups.flow_rollup_select(name, where, True)}")

    return Step(version, f"roll up older flows into {name}", needed, apply)


def cascade_fill_step(name: str) -> Step:
    """Fill a cascaded roll-up (:data:`~finsa.storage.rollups.CASCADES`) created next to a source
    roll-up that already held rows: once (recorded), only while the new roll-up is still empty.

    Its view rolls up what is written to the source from then on; a source backfilled later in
    the same migration (``backfill:<source>``) reaches it through that view, not through here.
    """
    version, source = f"fill:{name}", rollups.CASCADES[name][0]

    def needed(store: Any) -> bool:
        if _view_created(store, f"{name}_mv") is None or _recorded(store, version):
            return False
        empty = store._run_query(f"SELECT (SELECT count() FROM {name}) = 0 AND (SELECT count() FROM {source}) > 0",
                                 {}).rows
        return bool(empty[0][0])

    def apply(store: Any) -> None:
        columns = ", ".join(rollups.flow_rollup_columns(name) + ["stored_at"])
        store._run_command(f"INSERT INTO {name} ({columns}) SETTINGS insert_deduplicate = 0 "
                           f"{rollups.flow_rollup_select(name, stored_at=True, source=source)}")

    return Step(version, f"roll up {source} into {name}", needed, apply)


def retire_view_step(name: str) -> Step:
    """Drop the view of a retired roll-up (:data:`~finsa.storage.rollups.RETIRED_ROLLUPS`) when a
    store still has it, so inserts stop paying for it; its table is kept (read until its TTL
    empties it). Checks itself: the view must be gone afterwards.
    """
    view = f"{name}_mv"

    def apply(store: Any) -> None:
        store._run_command(f"DROP VIEW IF EXISTS {view}")
        if table_exists(store, view):
            raise RuntimeError(f"retire:{name}: {view} still exists after DROP VIEW")

    return Step(f"retire:{name}", f"drop {view} (superseded)", lambda store: table_exists(store, view), apply)


_CASCADE_VIEW = (re.compile(r"\bTO \w+\.flows_1h\b"), re.compile(r"\bFROM \w+\.flows_1m\b"))


def _view_query(store: Any, view: str) -> str:
    rows = store._run_query("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() "
                            "AND name = {v:String}", {"v": view}).rows
    return rows[0][0] if rows else ""


def _is_cascade(query: str) -> bool:
    """A single node's ``flows_1h_mv`` that reads ``flows_1m`` and writes ``flows_1h``.

    >>> _is_cascade("CREATE MATERIALIZED VIEW d.flows_1h_mv TO d.flows_1h (x) AS SELECT 1 FROM d.flows_1m GROUP BY 1")
    True
    >>> _is_cascade("CREATE MATERIALIZED VIEW d.flows_1h_mv TO d.flows_1h (x) AS SELECT 1 FROM d.flows_1m_local")
    False
    """
    return all(p.search(query) for p in _CASCADE_VIEW)


def _flows_1m_sketch_current(store: Any) -> bool:
    rows = store._run_query("SELECT type FROM system.columns WHERE database = currentDatabase() "
                            "AND table = 'flows_1m' AND name = 'sources'", {}).rows
    return bool(rows) and rows[0][0] == schema.DISTINCT_IP_TYPE


def _create_flows_1h_view(version: str) -> Step:
    """``flows_1h_mv`` (the cascade of ``flows_1m``), when ``flows_1m`` already holds today's
    sketch: an older store's ``flows_1m`` is rebuilt by ``sketch:flows_1m`` later in the same
    migration, and :func:`flows_1h_cascade_step` then creates the view."""
    return Step(version, "create flows_1h_mv",
                lambda store: not table_exists(store, "flows_1h_mv") and _flows_1m_sketch_current(store),
                lambda store: store._run_command(rollups.flows_1h_view_ddl()))


def flows_1h_cascade_step() -> Step:
    """Make a single-node store's ``flows_1h_mv`` the cascade of ``flows_1m``
    (:func:`~finsa.storage.rollups.flows_1h_view_ddl`): re-create an older view that rolls up
    every flow (the same rows, for a fraction of the insert CPU), or create it where the numbered
    step could not yet. Rows already in ``flows_1h`` stay; the lock held by ``migrate()`` keeps
    this process's writes out between the drop and the create (another worker writing to the
    same server store during the swap would miss ``flows_1h`` for those rows). A cluster node
    (``flows_1m_local`` exists) is left alone: its views come from the cluster DDL
    (:mod:`finsa.storage.cluster`). Checks itself."""
    def needed(store: Any) -> bool:
        if table_exists(store, "flows_1m_local") or not table_exists(store, "flows_1h"):
            return False
        return not _is_cascade(_view_query(store, "flows_1h_mv"))

    def apply(store: Any) -> None:
        store._run_command("DROP VIEW IF EXISTS flows_1h_mv")
        store._run_command(rollups.flows_1h_view_ddl())
        if not _is_cascade(_view_query(store, "flows_1h_mv")):
            raise RuntimeError("cascade:flows_1h: flows_1h_mv does not read flows_1m into flows_1h after the swap")

    return Step("cascade:flows_1h", "flows_1h_mv reads flows_1m (a cascade), not flows", needed, apply)


def talkers_bytes_only_step() -> Step:
    """An older single-node store's ``talkers_top_1h`` keeps only its bytes state: its view is
    re-created without the flows state (each Space-Saving state is ~7% of a 500k-row write; the
    top-talkers panel counts the flows of the sources it shows in ``flows`` over short ranges,
    :mod:`finsa.storage.rollups`) and the ``top_flows`` column is dropped. The view's new creation
    time must not look like a roll-up that missed the flows stored before it, so
    ``backfill:talkers_top_1h`` (which runs first in the same migration) is recorded as done. A
    cluster node (``flows_1m_local`` exists) is left alone. Checks itself."""
    view = "talkers_top_1h_mv"

    def needed(store: Any) -> bool:
        if table_exists(store, "flows_1m_local") or not table_exists(store, "talkers_top_1h"):
            return False
        return "top_flows" in existing_columns(store, "talkers_top_1h") or "top_flows" in _view_query(store, view)

    def apply(store: Any) -> None:
        store._run_command(f"DROP VIEW IF EXISTS {view}")
        store._run_command(rollups.flow_rollup_view_ddl("talkers_top_1h"))
        store._run_command("ALTER TABLE talkers_top_1h DROP COLUMN IF EXISTS top_flows")
        if not _recorded(store, "backfill:talkers_top_1h"):
            _record(store, "backfill:talkers_top_1h")
        if needed(store) or not table_exists(store, view):
            raise RuntimeError("talkers:bytes_only: talkers_top_1h still has its flows state after the swap")

    return Step("talkers:bytes_only", "talkers_top_1h: the bytes state only (its view re-created, top_flows dropped)",
                needed, apply)


#: MergeTree settings of a single-node ``flows`` that make its writes cheaper, each applied
#: where the engine has it (``system.merge_tree_settings``): no sparse serialization (the
#: mostly-empty protocol columns are written whole; ZSTD keeps them as small) and strings with
#: their sizes inline (one stream a column; 2% smaller here). Together ~4% of a 500k-row write
#: in ``bench rollups`` (docs/benchmarks.md, session 9).
FLOWS_SETTINGS = {"ratio_of_defaults_for_sparse_serialization": "1", "string_serialization_version": "'single_stream'"}


def _flows_settings_missing(store: Any) -> dict[str, str]:
    rows = store._run_query("SELECT engine, create_table_query FROM system.tables "
                            "WHERE database = currentDatabase() AND name = 'flows'", {}).rows
    if not rows or not rows[0][0].endswith("MergeTree"):
        return {}  # none yet, or a cluster's Distributed flows (its flows_local has its own DDL)
    known = {r[0] for r in store._run_query("SELECT name FROM system.merge_tree_settings", {}).rows}
    return {k: v for k, v in FLOWS_SETTINGS.items() if k in known and f"{k} = {v}" not in rows[0][1]}


def flows_settings_step() -> Step:
    """``settings:flows``: :data:`FLOWS_SETTINGS` on a single-node ``flows`` (new parts take them;
    stored parts keep their serialization until merged). Checks itself."""
    def apply(store: Any) -> None:
        missing = _flows_settings_missing(store)
        store._run_command("ALTER TABLE flows MODIFY SETTING " + ", ".join(f"{k} = {v}" for k, v in missing.items()))
        if _flows_settings_missing(store):
            raise RuntimeError(f"settings:flows: still missing {sorted(_flows_settings_missing(store))}")

    return Step("settings:flows", "flows: cheaper writes (no sparse columns, inline string sizes)",
                lambda store: bool(_flows_settings_missing(store)), apply)


def _flow_rollup_steps(first: int, ttl: Mapping[str, int]) -> list[Step]:
    steps = []
    for k, name in enumerate(rollups.FLOW_ROLLUPS):
        steps += [_create(f"{first + 2 * k:04d}_create_{name}", name, lambda n=name: rollups.flow_rollup_ddl(n, ttl[n])),  # type: ignore[misc]  # the default binds the loop variable
                  _create(f"{first + 2 * k + 1:04d}_create_{name}_mv", f"{name}_mv",
                          lambda n=name: rollups.flow_rollup_view_ddl(n))]  # type: ignore[misc]  # the default binds the loop variable
    return steps


def table_steps(ttl_days: Mapping[str, int] | None = None, database: str = "finsa") -> list[Step]:
    """The numbered steps, in order. ``ttl_days`` overrides :data:`DEFAULT_TTL_DAYS` per table;
    ``database`` is the store's (the dictionary and the view reading it name it)."""
    ttl = {**rollups.FLOW_ROLLUP_TTL_DAYS, **DEFAULT_TTL_DAYS, **(ttl_days or {})}
    return [
        _create("0001_create_schema_migrations", "schema_migrations", schema.schema_migrations_ddl),
        _create("0002_create_flows", "flows", lambda: schema.flows_ddl(ttl["flows"])),
        _create("0003_create_alerts", "alerts", lambda: schema.alerts_ddl(ttl["alerts"])),
        _create("0004_create_heartbeats", "heartbeats", lambda: schema.heartbeats_ddl(ttl["heartbeats"])),
        _create("0005_create_institutions", "institutions", schema.institutions_ddl),
        _create("0006_create_flows_1m", "flows_1m", lambda: schema.flows_1m_ddl(ttl["flows_1m"])),
        _create("0007_create_flows_1m_mv", "flows_1m_mv", schema.flows_1m_view_ddl),
        _create("0008_create_ingested_batches", "ingested_batches", schema.ingested_batches_ddl),
        _flows_1m_sources("0009_flows_1m_sources"),
        _create("0010_create_flows_1h", "flows_1h", lambda: rollups.flows_1h_ddl(ttl["flows_1h"])),
        _create_flows_1h_view("0011_create_flows_1h_mv"),
        _create("0012_create_alerts_1m", "alerts_1m", lambda: rollups.alerts_rollup_ddl("1m", ttl["alerts_1m"])),
        _create("0013_create_alerts_1m_mv", "alerts_1m_mv", lambda: rollups.alerts_rollup_view_ddl("1m")),
        _create("0014_create_alerts_1h", "alerts_1h", lambda: rollups.alerts_rollup_ddl("1h", ttl["alerts_1h"])),
        _create("0015_create_alerts_1h_mv", "alerts_1h_mv", lambda: rollups.alerts_rollup_view_ddl("1h")),
        _create("0016_create_ip_enrichment", "ip_enrichment", rollups.ip_enrichment_ddl),
        _create("0017_create_ip_enrichment_dict", "ip_enrichment_dict",
                lambda: rollups.ip_enrichment_dict_ddl(database)),
        _create("0018_create_alerts_geo_1h", "alerts_geo_1h", lambda: rollups.alerts_geo_1h_ddl(ttl["alerts_geo_1h"])),
        _create("0019_create_alerts_geo_1h_mv", "alerts_geo_1h_mv", lambda: rollups.alerts_geo_1h_view_ddl(database)),
        _create("0020_create_alerts_subsector_1h", "alerts_subsector_1h",
                lambda: rollups.alerts_subsector_1h_ddl(ttl["alerts_subsector_1h"])),
        _create("0021_create_alerts_subsector_1h_mv", "alerts_subsector_1h_mv", rollups.alerts_subsector_1h_view_ddl),
        _create("0022_create_campaigns", "campaigns", lambda: sector_ddl("campaigns", ttl["campaigns"])),
        _create("0023_create_warnings", "warnings", lambda: sector_ddl("warnings", ttl["warnings"])),
        _create("0024_create_threat_levels", "threat_levels", lambda: sector_ddl("threat_levels", ttl["threat_levels"])),
        _create("0025_create_audit_log", "audit_log", audit_log_ddl),
        _create("0026_create_emergencies", "emergencies", lambda: sector_ddl("emergencies", ttl["emergencies"])),
        *_flow_rollup_steps(27, ttl),
        schema.flows_time_alias_step("flows_time_alias"),
        _create("0040_create_arp_bindings", "arp_bindings", lambda: schema.arp_bindings_ddl(ttl["arp_bindings"])),
        # analyst work (finsa.storage.triage): append-only logs, never expired
        *[_create(f"triage:{table}", table, ddl) for table, ddl in triage.TABLES.items()],
        Step("index:flows.dst_ip_bloom", "flows: bloom filter on dst_ip (flow search)", triage.dst_index_needed,
             triage.add_dst_index),
        *[search_index.projection_step(name) for name in search_index.PROJECTIONS],
    ]


def _wanted_columns(table: str) -> list[Column]:
    if table == "institutions":
        return list(schema.INSTITUTION_COLUMNS)
    return schema.derived_columns(RECORD_OF_TABLE[table])


def column_steps(store: Any) -> list[Step]:
    """One ``add_column`` step per derived column missing from an existing table."""
    steps = []
    for table in (*RECORD_OF_TABLE, "institutions"):
        have = existing_columns(store, table)
        if not have:
            continue  # not created yet: its create step makes every column
        previous = None
        for col in _wanted_columns(table):
            if col.name not in have:
                sql = schema.add_column_sql(table, col, previous)
                steps.append(Step(f"add_column:{table}.{col.name}", f"add {col.name} to {table}",
                                  lambda store, t=table, c=col.name: c not in existing_columns(store, t),  # type: ignore[misc]  # the default binds the loop variable
                                  lambda store, s=sql: store._run_command(s)))  # type: ignore[misc]  # the default binds the loop variable
            previous = col.name
    return steps


def _record(store: Any, version: str) -> None:
    # versions are made of identifiers, dots, colons and digits: safe to inline
    store._run_command(f"INSERT INTO schema_migrations (version) VALUES ('{version}')")


def run_migrations(store: Any, ttl_days: Mapping[str, int] | None = None) -> MigrationReport:
    """Apply every needed step (call with the store's lock held, as ``Store.migrate`` does)."""
    report = MigrationReport()
    for step in table_steps(ttl_days, store.database):
        _run_step(store, step, report)
    for step in column_steps(store):
        _run_step(store, step, report)
    for step in resketch_steps(ttl_days):
        _run_step(store, step, report)
    _run_step(store, flows_1h_cascade_step(), report)
    for name in rollups.CASCADES:
        _run_step(store, cascade_fill_step(name), report)
    for name in rollups.FLOW_FED_ROLLUPS:
        _run_step(store, backfill_step(name), report)
    for name in rollups.RETIRED_ROLLUPS:
        _run_step(store, retire_view_step(name), report)
    _run_step(store, talkers_bytes_only_step(), report)
    _run_step(store, flows_settings_step(), report)
    return report


def _run_step(store: Any, step: Step, report: MigrationReport) -> None:
    if step.needed(store):
        step.apply(store)
        _record(store, step.version)
        report.applied.append(step.version)
    else:
        report.skipped.append(step.version)
