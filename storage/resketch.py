"""Upgrade of the distinct-count roll-ups of an older store to today's sketch (single node).

Roll-ups made before :data:`~finsa.storage.schema.DISTINCT_IP_TYPE` (``flows_1m``, ``flows_1h``
``sources``; ``services_1h`` ``clients``/``servers``) held ClickHouse ``uniq`` states, up to
65,536 hashes a row. A state of one function cannot be merged into another's, so each such
roll-up is rebuilt (:func:`resketch`), keeping its TTL:

* every bucket the stored flows cover is rolled up again from them, with today's view SELECT;
* older buckets (flows already expired) keep their sums (flows, bytes, packets) and get empty
  distinct counts: the traffic history stays, the distinct counts of those buckets read 0;
* the rebuilt table replaces the old one (``EXCHANGE TABLES``), then the view is re-created.

The step is needed while the table's columns or its view's SELECT are not today's, so it is
idempotent and self-checking: a crash anywhere leaves it needed, and running it again rebuilds
from scratch (the rebuild is never added to what is there). A roll-up backfilled from flows
(``backfill:<name>``) is recorded as such too: its new view must not send a backfill over the
flows the rebuild already counted.

>>> [s.version for s in resketch_steps()]
['sketch:flows_1m', 'sketch:flows_1h', 'sketch:services_1h']
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from finsa.storage import rollups, schema

_SUMS = ("flows", "bytes", "packets")


def _ttl_days(store: Any, table: str, default: int) -> int:
    created = store._run_query("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() "
                               "AND name = {t:String}", {"t": table}).rows
    if not created:
        return default
    found = re.search(r"TTL stored_at \+ toIntervalDay\((\d+)\)", created[0][0])
    return int(found.group(1)) if found else 0


def _current(store: Any, name: str) -> bool:
    """True when ``name`` and its view already use today's sketch (or ``name`` does not exist)."""
    types = dict(store._run_query("SELECT name, type FROM system.columns WHERE database = currentDatabase() "
                                  "AND table = {t:String}", {"t": name}).rows)
    if not types:
        return True  # not created yet: its create step makes it with today's sketch
    view = store._run_query("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() "
                            "AND name = {v:String}", {"v": f"{name}_mv"}).rows
    return (all(types.get(c) == schema.DISTINCT_IP_TYPE for c in rollups.SKETCHED_ROLLUPS[name])
            and bool(view) and (schema.DISTINCT_STATE in view[0][0] or schema.DISTINCT_MERGE_STATE in view[0][0]))


def _parts(name: str, ttl_days: int) -> tuple[str, Callable[[str], str], list[str], str]:
    """(table DDL, SELECT over flows given a WHERE, its columns, view DDL) of a sketched roll-up."""
    if name in ("flows_1m", "flows_1h"):
        resolution = name.split("_")[1]
        view = schema.flows_1m_view_ddl() if resolution == "1m" else rollups.flows_1h_view_ddl()
        return (schema.traffic_ddl(resolution, ttl_days),
                lambda where: schema.traffic_select(resolution, where, stored_at=True),
                schema.traffic_columns(resolution), view)
    return (rollups.flow_rollup_ddl(name, ttl_days),
            lambda where: rollups.flow_rollup_select(name, where, stored_at=True),
            rollups.flow_rollup_columns(name), rollups.flow_rollup_view_ddl(name))


def resketch(store: Any, name: str, ttl_days: int) -> None:
    """Rebuild ``name`` (a key of :data:`~finsa.storage.rollups.SKETCHED_ROLLUPS`) with today's
    sketch from the stored flows, older buckets keeping their sums; its TTL is kept."""
    ddl, select, columns, view = _parts(name, _ttl_days(store, name, ttl_days))
    building, bucket = f"{name}_resketch", columns[0]
    sketches = rollups.SKETCHED_ROLLUPS[name]
    keys = [c for c in columns if c not in sketches and c not in _SUMS]
    sums = [c for c in columns if c in _SUMS]
    store._run_command(f"DROP TABLE IF EXISTS {building} SYNC")
    store._run_command(ddl.replace(f"CREATE TABLE IF NOT EXISTS {name} (", f"CREATE TABLE {building} (", 1))
    into = f"INSERT INTO {building} ({', '.join(columns)}, stored_at) SETTINGS insert_deduplicate = 0 "
    days = store._run_query("SELECT DISTINCT toString(toDate(first_seen)) AS d FROM flows ORDER BY d", {}).rows
    for (day,) in days:  # 'YYYY-MM-DD' from the engine: safe to inline; a day a write bounds memory
        store._run_command(into + select(f"toDate(first_seen) = '{day}'"))
    start = "toStartOfMinute" if bucket == "minute" else "toStartOfHour"
    count, first = store._run_query(f"SELECT count(), toUnixTimestamp({start}(min(first_seen))) FROM flows", {}).rows[0]
    older = f" WHERE {bucket} < toDateTime({int(first)}, 'UTC')" if count else ""
    totals = ", ".join(f"sum({c})" for c in sums)
    store._run_command(f"INSERT INTO {building} ({', '.join(keys + sums)}, stored_at) SETTINGS insert_deduplicate = 0 "
                       f"SELECT {', '.join(keys)}, {totals}, max(stored_at) FROM {name}{older} "
                       f"GROUP BY {', '.join(keys)}")
    store._run_command(f"EXCHANGE TABLES {name} AND {building}")
    store._run_command(f"DROP VIEW IF EXISTS {name}_mv")
    store._run_command(view)
    store._run_command(f"DROP TABLE {building} SYNC")


def resketch_steps(ttl_days: Mapping[str, int] | None = None) -> list[Any]:
    """One ``sketch:<roll-up>`` step per sketched roll-up, needed while it is not today's."""
    from finsa.storage.migrations import Step, _record, _recorded

    ttl = {**rollups.FLOW_ROLLUP_TTL_DAYS, **schema.DEFAULT_TTL_DAYS, **(ttl_days or {})}

    def apply(store: Any, name: str) -> None:
        resketch(store, name, ttl[name])
        if name in rollups.FLOW_FED_ROLLUPS and not _recorded(store, f"backfill:{name}"):
            _record(store, f"backfill:{name}")  # every stored flow is in it now

    return [Step(f"sketch:{name}", f"rebuild {name} with {schema.DISTINCT_STATE}",
                 lambda store, n=name: not _current(store, n), lambda store, n=name: apply(store, n))  # type: ignore[misc]  # the default binds the loop variable
            for name in rollups.SKETCHED_ROLLUPS]
