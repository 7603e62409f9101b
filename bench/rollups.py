"""``python -m bench rollups``: what each flow roll-up costs at insert, against what it saves a panel.

The same ``--flows`` synthetic flows (``bench storage``'s, 100k-row batches, five per write) are
inserted into fresh stores that differ only in their flow roll-up views: every view (the
shipped store), none, and every view but one, for each view fed by ``flows`` (``talkers_1d``
is fed by ``talkers_1h``: dropping ``talkers_1h`` drops it too). Rate: rows per CPU second of
this process during the writes and the merges they leave (``bench storage``'s clock). The
variants run in turn in one process (one run: compare ratios, not absolute rates). The panel
side of the trade (a panel read from its roll-up vs from the raw flows: its raw twin) is
``bench storage``'s latency table at the same size.
"""

from __future__ import annotations

import shutil
import tempfile

from bench.measure import Clock
from bench.report import grid
from bench.storage import _groups, _settle, flow_batches

__all__ = ["run"]


def _insert(flows: int, drop: tuple[str, ...]) -> float:
    """Rows per CPU second into a fresh store without the views ``drop``."""
    from finsa.storage.backend import open_store

    folder = tempfile.mkdtemp(prefix="finsa-bench-rollups-")
    try:
        with open_store(data_dir=folder) as store:
            store.migrate()
            for view in drop:
                store.command(f"DROP VIEW IF EXISTS {view}_mv")
            batches = list(_groups(flow_batches(flows, 100_000), 5))  # made before the clock starts
            clock = Clock()
            for group in batches:
                store.insert_many(group)
            cpu_s = clock.cpu_s
            cpu_s += _settle(store)[0]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return flows / cpu_s


def run(quick: bool, flows: int | None = None) -> list[str]:
    from finsa.storage.rollups import CASCADES, FLOW_FED_ROLLUPS

    n = flows or (500_000 if quick else 2_000_000)
    views = sorted({"flows_1m", "flows_1h", *FLOW_FED_ROLLUPS, *CASCADES})
    variants = [("every roll-up (shipped)", ())] + [
        (f"without {v}", (v,) + tuple(c for c, (src, *_) in CASCADES.items() if src == v))
        for v in views if v not in CASCADES] + [("without talkers_1d", ("talkers_1d",)), ("no roll-up", tuple(views))]
    rates = [(name, _insert(n, drop)) for name, drop in variants]
    base = rates[0][1]
    rows = [[name, f"{rate:,.0f}", f"{rate / base:.2f}"] for name, rate in rates]
    return [f"rollups: insert {n:,} flows, rows per CPU second (writes + their merges) by flow roll-up views present\n"
            + grid(["store", "rows per CPU s", "ratio to shipped"], rows)]
