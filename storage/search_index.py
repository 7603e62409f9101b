"""Flow search by address: projections of ``flows`` ordered by destination and by source address.

``flows`` is ordered by (institution, minute, source): a filter on ``dst_ip`` reads every granule
of the range. The ``dst_ip_bloom`` skip index
(:mod:`finsa.storage.triage`) skips granules for ``dst_ip = X`` / ``in (...)`` of a rare
address, not for a CIDR range (a ``BETWEEN``) nor a common address; and since a minute of one
institution is about one granule at 100M flows a day, the key's third column (``src_ip``) prunes
almost nothing either. Each of :data:`PROJECTIONS` is a second, narrow copy of the flows sorted
by (its address, ``institution_id``, ``first_seen_ms``), holding only
:func:`projection_fields` (wire fields of :data:`finsa.wire.FLOW`: that address, the time, the
flow id, ports, protocol, bytes): ClickHouse reads it instead of the table whenever a query
names only those columns and reads fewer granules through it -- the
search's per-minute chart, and the first step of its rows query
(:func:`finsa.dashboards.soc.flowsearch.search_sql` finds the newest matching flow ids there,
then reads their full rows by key). Measured in ``bench/flow_search.py`` and docs/benchmarks.md.

>>> "ORDER BY dst_ip, institution_id, first_seen_ms" in projection_sql("flows_by_dst")
True
>>> projection_sql("flows_by_src").startswith("ALTER TABLE flows ADD PROJECTION IF NOT EXISTS flows_by_src (SELECT flow_id, ")
True
"""

from __future__ import annotations

from typing import Any

from finsa.wire import FLOW

__all__ = ["PROJECTIONS", "projection_fields", "projection_needed", "add_projection", "projection_sql",
           "projection_step"]

_NARROW = {"flow_id", "first_seen_ms", "institution_id", "protocol", "src_port", "dst_port", "src2dst_bytes",
           "dst2src_bytes"}
#: name -> the address it is sorted by (then institution, then time).
PROJECTIONS = {"flows_by_dst": "dst_ip", "flows_by_src": "src_ip"}


def projection_fields(name: str) -> tuple[str, ...]:
    """The wire fields a projection holds, in :data:`finsa.wire.FLOW` order (never a second list).

    >>> projection_fields("flows_by_src")
    ('flow_id', 'first_seen_ms', 'institution_id', 'protocol', 'src_ip', 'src_port', 'dst_port', 'src2dst_bytes', 'dst2src_bytes')
    """
    wanted = _NARROW | {PROJECTIONS[name]}
    return tuple(f.name for f in FLOW.fields if f.name in wanted)


def projection_sql(name: str) -> str:
    """``ALTER TABLE flows ADD PROJECTION`` of one of :data:`PROJECTIONS`."""
    order = (PROJECTIONS[name], "institution_id", "first_seen_ms")
    return (f"ALTER TABLE flows ADD PROJECTION IF NOT EXISTS {name} "
            f"(SELECT {', '.join(projection_fields(name))} ORDER BY {', '.join(order)})")


def projection_needed(store: Any, name: str) -> bool:
    """True on a single-node ``flows`` (a MergeTree) without the projection; a cluster's
    Distributed ``flows`` is left alone (the projection goes on ``flows_local``)."""
    got = store._run_query("SELECT engine, create_table_query FROM system.tables "
                           "WHERE database = currentDatabase() AND name = 'flows'", None).rows
    if not got or not got[0][0].endswith("MergeTree"):
        return False
    return f"PROJECTION {name} " not in got[0][1]


def add_projection(store: Any, name: str) -> None:
    """Add the projection and build it for the parts already stored (a mutation: on a big store
    it reads and sorts every stored flow once; new parts get it as they are written)."""
    store._run_command(projection_sql(name))
    store._run_command(f"ALTER TABLE flows MATERIALIZE PROJECTION {name} SETTINGS mutations_sync = 1")


def projection_step(name: str) -> Any:
    """The migration step ``projection:flows.<name>``."""
    from finsa.storage.migrations import Step

    return Step(f"projection:flows.{name}", f"flows: a narrow projection ordered by {PROJECTIONS[name]} (flow search)",
                lambda store: projection_needed(store, name), lambda store: add_projection(store, name))


assert all(PROJECTIONS[n] in projection_fields(n) and "institution_id" in projection_fields(n) for n in PROJECTIONS)
