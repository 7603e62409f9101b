"""The finsa schema for a ClickHouse cluster: replicated shards behind Distributed tables.

:func:`cluster_statements` turns the single-node migration steps of
:mod:`finsa.storage.migrations` (never a second copy of the schema) into cluster DDL, all
``ON CLUSTER``:

* a sharded table ``t`` becomes ``t_local`` (``Replicated*MergeTree`` with the replication path
  ``/clickhouse/tables/{shard}/<database>/t_local`` and replica ``{replica}``) plus ``t``, a
  ``Distributed`` table over ``t_local`` with the sharding key of :data:`SHARDING_KEYS`. The
  worker keeps writing to and reading from ``t``: names do not change, so a finsa Store on a
  cluster node finds every table its own ``migrate()`` expects and creates nothing.
  Keys keep duplicates on one shard: a flow batch lands whole on one shard (``batch_id``), so a
  redelivered batch meets its insert deduplication token there; an alert id, a campaign id, a
  warning id always land on the same shard, so ``FINAL`` collapses them.
* roll-up tables (targets of materialised views) are sharded too; their views read
  ``<source>_local`` and write ``<target>_local`` on each shard, and their Distributed table has
  no sharding key (read only: only the views write them).
* small tables every node needs in full (:data:`GLOBAL_TABLES`: the institutions a view joins,
  the enrichment a dictionary reads, the audit trail, the migration ledger) are replicated to
  every node under the path ``/clickhouse/tables/all/<database>/t``; the ``{replica}`` macro must
  therefore be unique in the whole cluster (a host name).

``plain=True`` gives the equivalent without replication and without ``ON CLUSTER`` (plain
MergeTree engines, Distributed still over ``cluster``): what the tests run on the embedded
engine, where Replicated inserts need a real Keeper.

    finsa storage migrate --cluster finsa --print
    finsa storage migrate --cluster finsa --clickhouse-url http://admin:PW@ch-s1r1:8123

>>> sql = cluster_statements("finsa")
>>> sql[0]
'CREATE DATABASE IF NOT EXISTS finsa ON CLUSTER finsa'
>>> [s.split(" (")[0].split(" ENGINE")[0] for s in sql if s.startswith("CREATE TABLE IF NOT EXISTS finsa.flows ")
...  or s.startswith("CREATE TABLE IF NOT EXISTS finsa.flows_local ")]
['CREATE TABLE IF NOT EXISTS finsa.flows_local ON CLUSTER finsa', 'CREATE TABLE IF NOT EXISTS finsa.flows ON CLUSTER finsa AS finsa.flows_local']
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from finsa.errors import StorageError
from finsa.storage import migrations, schema
from finsa.storage.backend import check_identifier

#: sharded table -> Distributed sharding key (None: read-only Distributed, written by views).
SHARDING_KEYS: dict[str, str | None] = {
    "flows": "cityHash64(batch_id)",
    "heartbeats": "cityHash64(batch_id)",
    "arp_bindings": "cityHash64(batch_id)",
    "ingested_batches": "cityHash64(batch_id)",
    "alerts": "cityHash64(alert_id)",
    "campaigns": "cityHash64(campaign_id)",
    "warnings": "cityHash64(warning_id)",
    "threat_levels": "cityHash64(batch_id)",
    "emergencies": "cityHash64(batch_id)",
    "flows_1m": None, "flows_1h": None, "alerts_1m": None, "alerts_1h": None,
    "alerts_geo_1h": None, "alerts_subsector_1h": None, "talkers_top_1h": None, "talkers_top_1d": None,
    "services_1h": None,
    "ingest_lag_1m": None,
}
#: tables replicated in full to every node (no shards, no Distributed table).
GLOBAL_TABLES = frozenset({"schema_migrations", "institutions", "ip_enrichment", "audit_log",
                           "triage_events", "cases", "allowlist_entries"})  # analysts' work: small, everywhere
#: single-node steps that cluster DDL does not need (their effect is in the CREATE already).
SKIPPED_STEPS = frozenset({"0009_flows_1m_sources", "flows_time_alias",  # upgrades of an older single-node store
                           # ALTERs: on a cluster, ALTER TABLE flows_local ... ON CLUSTER
                           "index:flows.dst_ip_bloom", "projection:flows.flows_by_dst", "projection:flows.flows_by_src"})

_CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+) \(")
_CREATE_VIEW = re.compile(r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO (\w+) AS\n")
_CREATE_DICT = re.compile(r"^CREATE DICTIONARY IF NOT EXISTS (\w+) \(")
_ENGINE = re.compile(r"\) ENGINE = (\w*MergeTree)(?:\(([^)]*)\))?")
_SOURCE = re.compile(r"\b(FROM|JOIN) (\w+)\b")


class _Recorder:
    """Stands in for a Store: a migration step's ``apply`` hands its DDL here."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def _run_command(self, sql: str) -> str:
        self.statements.append(sql.strip())
        return ""


def single_node_statements(ttl_days: Mapping[str, int] | None = None, database: str = "finsa") -> list[str]:
    """The CREATE statements of every numbered migration step, in order."""
    recorder = _Recorder()
    for step in migrations.table_steps(ttl_days, database):
        if step.version not in SKIPPED_STEPS:
            step.apply(recorder)
    return recorder.statements


def _engine(match: re.Match, path: str, plain: bool) -> str:
    name, args = match.group(1), match.group(2)
    if plain:
        return match.group(0)
    params = [f"'{path}'", "'{replica}'"] + ([args] if args else [])
    return f") ENGINE = Replicated{name}({', '.join(params)})"


def _table(sql: str, name: str, cluster: str, database: str, plain: bool) -> list[str]:
    on = "" if plain else f" ON CLUSTER {cluster}"
    if name in GLOBAL_TABLES:
        local, path = name, f"/clickhouse/tables/all/{database}/{name}"
    elif name in SHARDING_KEYS:
        local, path = f"{name}_local", f"/clickhouse/tables/{{shard}}/{database}/{name}_local"
    else:
        raise StorageError(f"cluster DDL: table {name!r} is neither sharded nor global: add it to "
                           "finsa.storage.cluster.SHARDING_KEYS or GLOBAL_TABLES")
    body = _CREATE_TABLE.sub(f"CREATE TABLE IF NOT EXISTS {database}.{local}{on} (", sql, count=1)
    if not _ENGINE.search(body):
        raise StorageError(f"cluster DDL: no MergeTree engine found for {name!r}")
    body = _ENGINE.sub(lambda m: _engine(m, path, plain), body, count=1)
    if not plain:
        body = body.replace("non_replicated_deduplication_window", "replicated_deduplication_window")
    out = [body]
    if local != name:
        key = SHARDING_KEYS[name]
        args = f"{cluster}, {database}, {local}" + (f", {key}" if key else "")
        out.append(f"CREATE TABLE IF NOT EXISTS {database}.{name}{on} AS {database}.{local} "
                   f"ENGINE = Distributed({args})")
    return out


def _local_name(table: str) -> str:
    return f"{table}_local" if table in SHARDING_KEYS else table


def _view(sql: str, match: re.Match, cluster: str, database: str, plain: bool) -> str:
    on = "" if plain else f" ON CLUSTER {cluster}"
    view, target = match.group(1), match.group(2)
    select = sql[match.end():]
    select = _SOURCE.sub(lambda m: f"{m.group(1)} {database}.{_local_name(m.group(2))}", select)
    return (f"CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.{view}{on} "
            f"TO {database}.{_local_name(target)} AS\n{select}")


def cluster_statements(cluster: str, database: str = "finsa", ttl_days: Mapping[str, int] | None = None,
                       plain: bool = False) -> list[str]:
    """The cluster DDL, in order: database, tables, Distributed tables, dictionaries, views."""
    check_identifier(cluster)
    check_identifier(database)
    on = "" if plain else f" ON CLUSTER {cluster}"
    out = [f"CREATE DATABASE IF NOT EXISTS {database}{on}"]
    for sql in single_node_statements(ttl_days, database):
        if (m := _CREATE_TABLE.match(sql)) is not None:
            out += _table(sql, m.group(1), cluster, database, plain)
        elif (m := _CREATE_VIEW.match(sql)) is not None:
            out.append(_view(sql, m, cluster, database, plain))
        elif (m := _CREATE_DICT.match(sql)) is not None:
            out.append(_CREATE_DICT.sub(f"CREATE DICTIONARY IF NOT EXISTS {database}.{m.group(1)}{on} (", sql, 1))
        else:
            raise StorageError(f"cluster DDL: statement not understood: {sql[:80]!r}")
    return out


def column_statements(existing: Callable[[str], list[str]], cluster: str, database: str = "finsa",
                      plain: bool = False) -> list[str]:
    """``ALTER TABLE ... ADD COLUMN`` for every derived column a cluster table lacks.

    ``existing(table)`` gives the columns of the local table (empty: not created yet). Each
    missing column is added to the local table, then to its Distributed table.
    """
    on = "" if plain else f" ON CLUSTER {cluster}"
    out = []
    for table in (*schema.RECORD_OF_TABLE, "institutions"):
        local = _local_name(table)
        have = existing(local)
        previous = None
        for col in (migrations._wanted_columns(table) if have else []):
            if col.name not in have:
                for name in dict.fromkeys((local, table)):
                    sql = schema.add_column_sql(f"{database}.{name}", col, previous)
                    out.append(sql.replace(f"ALTER TABLE {database}.{name} ", f"ALTER TABLE {database}.{name}{on} ", 1))
            previous = col.name
    return out


def apply(store: Any, cluster: str, database: str = "finsa", ttl_days: Mapping[str, int] | None = None) -> list[str]:
    """Run the cluster DDL, then the column additions, through ``store.command``; returns them."""
    done = cluster_statements(cluster, database, ttl_days)
    for sql in done:
        store.command(sql)

    def existing(table: str) -> list[str]:
        rows = store.query("SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String} "
                           "ORDER BY position", {"db": database, "t": table}).rows
        return [r[0] for r in rows]

    columns = column_statements(existing, cluster, database)
    for sql in columns:
        store.command(sql)
    return done + columns
