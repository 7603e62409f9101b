"""``python -m bench.insert_parts [--rows 500000] [--repeats 7]``: what each part of a flow insert costs.

``bench rollups`` measures whole stores, one after the other; on a shared 2-core machine its
rounds move by +-20%, more than most single parts of an insert cost. This measures the parts
apart, on the engine alone: one block of ``--rows`` synthetic flows (``bench storage``'s) is
loaded once into a Memory table (spread over as much time as one write of ``bench rollups``
holds: 500,000 flows are 6 hours), and each variant is a database migrated like a shipped store
and then stripped to one feature (a roll-up view, a projection, the skip index) or changed in one
way (codecs, the block already in the table's key order). ``INSERT INTO <variant>.flows SELECT
... FROM`` the block runs ``--repeats`` times per variant, interleaved, and the CPU of this
process (the engine's threads included) is reported as min and median, and as the increment
over the bare table (median minus the bare table's median). Not measured here: encoding the
Native payload in Python and parsing it (both fixed per row whatever the store holds), merges.

    python -m bench.insert_parts --rows 500000 --repeats 7
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from typing import Any

from bench.flows import START_MS, synthetic_flows
from bench.report import grid
from bench.storage import DAY_MS
from finsa.storage import rollups
from finsa.storage.native import native_block_of
from finsa.storage.schema import derived_columns, time_expression
from finsa.storage.search_index import PROJECTIONS
from finsa.storage.triage import DST_INDEX
from finsa.wire import FLOW

__all__ = ["run", "VARIANTS"]

VIEWS = ("flows_1m", "flows_1h", *rollups.FLOW_ROLLUPS)
#: Flows a day in ``bench rollups`` (2M over 24 h): the block covers the same share of a day, so a
#: block fills as many roll-up buckets (hours, minutes) as one of its writes.
DAY_FLOWS = 2_000_000
_KEY = f"institution_id, toStartOfMinute({time_expression('first_seen_ms')}), src_ip"
#: variant -> (what it keeps of a shipped store: "views", "projections", "index" or a view's name;
#: changes applied after stripping, "{db}" standing for its database).
VARIANTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "bare flows table": ((), ()),
    "bare, block already in key order": ((), ()),
    "bare, ZSTD(1) -> LZ4": ((), ("lz4",)),
    f"+ {DST_INDEX} (bloom skip index)": (("index",), ()),
    **{f"+ {p} (projection)": ((p,), ()) for p in PROJECTIONS},
    **{f"+ {p} as _part_offset only": ((), (f"offset:{p}",)) for p in PROJECTIONS},
    **{f"+ {v}_mv": ((v,), ()) for v in VIEWS},
    "shipped (every view, both projections, index)": (("views", "index", *PROJECTIONS), ()),
}


def _strip(store: Any, db: str, keep: tuple[str, ...], changes: tuple[str, ...]) -> None:
    """Drop from ``db`` what the variant does not keep (views on flows, projections, the index)."""
    views = store.query(f"SELECT name FROM system.tables WHERE database = '{db}' AND engine = 'MaterializedView' "
                        "AND create_table_query LIKE '%FROM {db}.flows %'".replace("{db}", db)).rows
    for (view,) in views:
        if "views" not in keep and view.removesuffix("_mv") not in keep:
            store.command(f"DROP VIEW {db}.{view}")
    for name in PROJECTIONS:
        if name not in keep:
            store.command(f"ALTER TABLE {db}.flows DROP PROJECTION IF EXISTS {name}")
    if "index" not in keep:
        store.command(f"ALTER TABLE {db}.flows DROP INDEX IF EXISTS {DST_INDEX}")
    for change in changes:
        if change == "lz4":
            for name, codec in store.query(f"SELECT name, compression_codec FROM system.columns WHERE database = '{db}' "
                                           "AND table = 'flows' AND compression_codec LIKE '%ZSTD(1)%'").rows:
                store.command(f"ALTER TABLE {db}.flows MODIFY COLUMN {name} {codec.replace('ZSTD(1)', 'LZ4')}")
        elif change.startswith("offset:"):
            name = change.split(":", 1)[1]
            store.command(f"ALTER TABLE {db}.flows ADD PROJECTION {name} (SELECT _part_offset ORDER BY {PROJECTIONS[name]})")


def _block(rows: int) -> list[Any]:
    """``rows`` synthetic flows in 100k-row batches, time-ordered, at ``DAY_FLOWS`` a day."""
    size = min(rows, 100_000)
    span_ms = max(DAY_MS * size // DAY_FLOWS, 1)
    return [synthetic_flows(min(size, rows - lo), seed=i, start_ms=START_MS + i * span_ms, span_ms=span_ms,
                            flow_id_base=lo + 1) for i, lo in enumerate(range(0, rows, size))]


def _migrated(store: Any, db: str) -> None:
    from finsa.storage.migrations import run_migrations

    store.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    with store._lock:  # migrations run in the current database: switch to the variant's
        store._use_database(db)
        try:
            run_migrations(store)
        finally:
            store._use_database(store.database)


def run(rows: int = 500_000, repeats: int = 7) -> list[str]:
    from finsa.storage.backend import open_store

    folder = tempfile.mkdtemp(prefix="finsa-bench-insert-parts-")
    try:
        with open_store(data_dir=folder) as store:
            store.migrate()
            store.command("CREATE TABLE block AS flows ENGINE = Memory")
            store.command("CREATE TABLE block_sorted AS flows ENGINE = Memory")
            names, payload = native_block_of(_block(rows))
            with store._lock:
                store._insert_bytes("block", names, payload, "Native", {})
            cols = ", ".join(c.name for c in derived_columns(FLOW) if not c.alias)
            store.command(f"INSERT INTO block_sorted ({cols}) SELECT {cols} FROM block ORDER BY {_KEY} "
                          "SETTINGS max_threads = 1, max_block_size = 10000000")
            for k, (keep, changes) in enumerate(VARIANTS.values()):
                _migrated(store, f"v{k}")
                _strip(store, f"v{k}", keep, changes)
            cpu_ms: dict[str, list[float]] = {name: [] for name in VARIANTS}
            for _ in range(repeats):
                for k, name in enumerate(VARIANTS):
                    source = "block_sorted" if "key order" in name else "block"
                    store.command(f"TRUNCATE TABLE v{k}.flows")
                    t0 = time.process_time()
                    store.command(f"INSERT INTO v{k}.flows ({cols}) SETTINGS insert_deduplicate = 0, "
                                  f"optimize_on_insert = 0, max_block_size = 10000000, "
                                  f"min_insert_block_size_rows = 10000000 SELECT {cols} FROM {source}")
                    cpu_ms[name].append((time.process_time() - t0) * 1000)
            sizes = {name: store.query(f"SELECT sum(bytes_on_disk) / sum(rows) FROM system.parts WHERE database = 'v{k}' "
                                       "AND table = 'flows' AND active").rows[0][0] for k, name in enumerate(VARIANTS)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    bare = statistics.median(cpu_ms["bare flows table"])
    table = [[name, f"{min(v):,.0f}", f"{statistics.median(v):,.0f}", f"{statistics.median(v) - bare:+,.0f}",
              f"{sizes[name]:.1f}"] for name, v in cpu_ms.items()]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return [f"## insert_parts: INSERT ... SELECT of one {rows:,}-row block of flows, {repeats} interleaved repeats, "
            f"CPU ms (load average {load})\n"
            + grid(["variant", "min ms", "median ms", "over bare (median)", "flows bytes per flow"], table)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.insert_parts", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=500_000, help="flows in the block (default 500,000)")
    p.add_argument("--repeats", type=int, default=7, help="inserts per variant (default 7)")
    args = p.parse_args(argv)
    print("\n\n".join(run(args.rows, args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
