"""``python -m bench.write_cost [--rows 5000] [--writes 40]``: what one store write costs, and where.

A worker that keeps up writes a small group of flows every second or two, so its store cost is
set by the number of writes, not by the rows (issue 17). This inserts ``--writes`` writes of
``--rows`` flows each (``bench storage``'s synthetic flows) into fresh stores that differ in what
an insert feeds: the shipped store (every roll-up view, both flow search projections, the
deduplication window), without the roll-up views, without the projections, without the
deduplication window, and bare (none of them). Rate: rows per CPU second of this process (chdb's
own threads included) during the writes; CPU ms per write. Compare the variants within a run.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile

from bench.measure import Clock
from bench.report import grid
from bench.storage import flow_batches
from finsa.storage.search_index import PROJECTIONS

__all__ = ["run"]

VARIANTS = {
    "shipped": (),
    "no roll-up views": ("views",),
    "no search projections": ("projections",),
    "no dedup window": ("dedup",),
    "bare": ("views", "projections", "dedup"),
}


def _strip(store, parts: tuple[str, ...]) -> None:
    if "views" in parts:
        for (view,) in store.query("SELECT name FROM system.tables WHERE database = currentDatabase() "
                                   "AND engine = 'MaterializedView'").rows:
            store.command(f"DROP VIEW {view}")
    if "projections" in parts:
        for name in PROJECTIONS:
            store.command(f"ALTER TABLE flows DROP PROJECTION IF EXISTS {name}")
    if "dedup" in parts:
        store.command("ALTER TABLE flows MODIFY SETTING non_replicated_deduplication_window = 0")


def _measure(parts: tuple[str, ...], rows: int, writes: int) -> tuple[float, float]:
    from finsa.storage.backend import open_store

    folder = tempfile.mkdtemp(prefix="finsa-bench-writecost-")
    try:
        with open_store(data_dir=folder) as store:
            store.migrate()
            _strip(store, parts)
            batches = list(flow_batches(rows * writes, rows))  # made before the clock starts
            clock = Clock()
            for batch in batches:
                store.insert_many([batch])
            cpu_s = clock.cpu_s
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows * writes / cpu_s, cpu_s / writes * 1000


def run(rows: int = 5_000, writes: int = 40) -> list[str]:
    _measure((), rows, 4)  # the process's first store pays one-off costs
    table = []
    for name, parts in VARIANTS.items():
        rate, ms = _measure(parts, rows, writes)
        table.append([name, f"{rate:,.0f}", f"{ms:,.0f}"])
    return [f"## write_cost: {writes} writes of {rows:,} flows into fresh stores\n"
            + grid(["store", "rows per CPU s", "CPU ms per write"], table)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.write_cost", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=5_000, help="flows per write (default 5,000)")
    p.add_argument("--writes", type=int, default=40, help="writes per store (default 40)")
    args = p.parse_args(argv)
    print("\n\n".join(run(args.rows, args.writes)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
