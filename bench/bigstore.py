"""One filled store kept on disk and reused by several benchmarks (``--store DIR``).

``python -m bench.bigstore --store /work/bigstore --flows 100000000`` loads a store exactly as
``bench storage`` does (wire batches of 100k synthetic flows over 24 h, five per
``Store.insert_many``, every roll-up view on, then N/1000 alerts and the sector tables), waits
for its merges, and writes a marker file ``bench-fill.json`` (flows, insert CPU and wall
seconds). Later runs of ``bench panels --store DIR`` or ``bench.flow_search --store DIR`` open
the same directory and skip the load when the marker says it holds the flows asked for.

>>> fill_marker("/nonexistent") is None
True
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from bench.measure import Clock
from bench.storage import _load, _settle, synthetic_alerts
from bench.storage_fill import fill_small_tables

__all__ = ["fill_marker", "filled_store"]

MARKER = "bench-fill.json"


def fill_marker(folder: str) -> dict | None:
    """The marker a finished fill left in ``folder`` (None: not filled, or not finished)."""
    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def filled_store(folder: str, flows: int, migrate: bool = True):
    """An open store over ``folder`` holding ``flows`` benchmark flows (loaded now if it does not).

    A folder holding a finished fill of another size, or an unfinished fill, is refused: delete
    it first (a fill cannot be resumed). ``migrate=False`` leaves a filled store's schema as it
    is (to measure before a new migration step); the time ``migrate()`` took is printed.
    """
    from finsa.storage.backend import open_store

    marker = fill_marker(folder)
    if marker is not None and marker["flows"] != flows:
        raise SystemExit(f"{folder} holds {marker['flows']:,} flows, not {flows:,}: use another --store")
    if marker is None and Path(folder).exists() and any(Path(folder).iterdir()):
        raise SystemExit(f"{folder} holds an unfinished fill: delete it first")
    os.makedirs(folder, exist_ok=True)
    store = open_store(data_dir=folder)
    if migrate or marker is None:
        clock = Clock()
        applied = store.migrate()
        if marker is not None and applied:
            print(f"# migrate() on the filled store: {', '.join(applied)} in {clock.wall_s:.0f} s wall, "
                  f"{clock.cpu_s:.0f} CPU s", flush=True)
    if marker is None:
        results = _load(store, flows, 100_000, 5)
        store.insert(synthetic_alerts(max(1, flows // 1000)))
        fill_small_tables(store)
        _settle(store)
        done = {"flows": flows, "insert": [{"tool": r.tool, "cpu_s": r.seconds, "rows_per_cpu_s": r.rate, "note": r.note}
                                           for r in results]}
        (Path(folder) / MARKER).write_text(json.dumps(done, indent=1))
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description="fill (once) a benchmark store kept on disk")
    parser.add_argument("--store", required=True, help="the store's directory (outside the repository)")
    parser.add_argument("--flows", type=int, default=100_000_000)
    args = parser.parse_args()
    filled_store(args.store, args.flows).close()
    print(json.dumps(fill_marker(args.store), indent=1))


if __name__ == "__main__":
    main()
