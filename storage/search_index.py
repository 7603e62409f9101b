"""Flow search by destination: a projection of ``flows`` ordered by destination address.

``flows`` is ordered by (institution, minute, source): a filter on ``src_ip`` prunes by the key,
one on ``dst_ip`` reads every granule of the range. The ``dst_ip_bloom`` skip index
(:mod:`finsa.storage.triage`) skips granules for ``dst_ip = X`` / ``in (...)`` of a rare
address, not for a CIDR range (a ``BETWEEN``) nor a common address. :data:`DST_PROJECTION` is a
second, narrow copy of the flows sorted by (``dst_ip``, ``institution_id``, ``first_seen_ms``),
holding only :data:`DST_PROJECTION_FIELDS` (wire fields of :data:`finsa.wire.FLOW`: the
destination, the time, the flow id, ports, protocol, bytes): ClickHouse reads it instead of
the table whenever a query names only those columns and reads fewer granules through it -- the
search's per-minute chart, and the first step of its rows query
(:func:`finsa.dashboards.soc.flowsearch.search_sql` finds the newest matching flow ids there,
then reads their full rows by key). Measured in ``bench/flow_search.py`` and docs/benchmarks.md.

>>> "ORDER BY dst_ip, institution_id, first_seen_ms" in projection_sql()
True
>>> projection_sql().startswith("ALTER TABLE flows ADD PROJECTION IF NOT EXISTS flows_by_dst (SELECT flow_id, ")
True
"""

from __future__ import annotations

from typing import Any

from finsa.wire import FLOW

__all__ = ["DST_PROJECTION", "DST_PROJECTION_FIELDS", "projection_needed", "add_projection", "projection_sql"]

DST_PROJECTION = "flows_by_dst"
#: The wire fields the projection holds, in wire order (checked against FLOW at import).
DST_PROJECTION_FIELDS = tuple(f.name for f in FLOW.fields if f.name in {
    "flow_id", "first_seen_ms", "institution_id", "protocol", "src_port", "dst_ip", "dst_port",
    "src2dst_bytes", "dst2src_bytes"})
_ORDER = ("dst_ip", "institution_id", "first_seen_ms")


def projection_sql() -> str:
    """``ALTER TABLE flows ADD PROJECTION`` of :data:`DST_PROJECTION`."""
    return (f"ALTER TABLE flows ADD PROJECTION IF NOT EXISTS {DST_PROJECTION} "
            f"(SELECT {', '.join(DST_PROJECTION_FIELDS)} ORDER BY {', '.join(_ORDER)})")


def projection_needed(store: Any) -> bool:
    """True on a single-node ``flows`` (a MergeTree) without the projection; a cluster's
    Distributed ``flows`` is left alone (the projection goes on ``flows_local``)."""
    got = store._run_query("SELECT engine, create_table_query FROM system.tables "
                           "WHERE database = currentDatabase() AND name = 'flows'", None).rows
    if not got or not got[0][0].endswith("MergeTree"):
        return False
    return f"PROJECTION {DST_PROJECTION} " not in got[0][1]


def add_projection(store: Any) -> None:
    """Add the projection and build it for the parts already stored (a mutation: on a big store
    it reads and sorts every stored flow once; new parts get it as they are written)."""
    store._run_command(projection_sql())
    store._run_command(f"ALTER TABLE flows MATERIALIZE PROJECTION {DST_PROJECTION} SETTINGS mutations_sync = 1")


assert len(DST_PROJECTION_FIELDS) == 9 and set(_ORDER) <= set(DST_PROJECTION_FIELDS)
