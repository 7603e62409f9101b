"""``python -m bench rollups``: what each flow roll-up costs at insert, against what it saves a panel.

The same ``--flows`` synthetic flows (``bench storage``'s, 100k-row batches, five per write, over
one day) are inserted into fresh stores that differ only in their flow roll-up views: every view
(the shipped store), the per-source top-talkers roll-ups finsa shipped before
(:mod:`bench.rollups_before`) in place of the heavy-hitter ones, every view but one, and none.
The variant without flow search's address projections
(:mod:`finsa.storage.search_index`) prices them the same way.
Rate: rows per CPU second of this process during the writes and the merges they leave (``bench
storage``'s clock), best of ``rounds`` interleaved rounds after a warm-up store (the
process's first store pays one-off costs). The variants run in turn in one process (compare
ratios, not absolute rates).

The panel side: the top-talkers panel, whole sector, over the last hour and the whole day
(p50/p95 wall ms) as each variant answers it (the shipped SQL, the SQL of before, the raw twin
when no talkers roll-up is left), and for the shipped heavy-hitter states how many of the raw
twin's ten sources they return with exact flows and bytes. The synthetic sources are uniform
(65,535 hosts alike per institution: the worst case of a heavy-hitter sketch, every row a new
source to a full state); the shipped store is measured a second time on skewed sources
(:data:`SOURCE_SKEW`), the traffic the heavy-hitter views are made for. The batches are decoded
from their wire bytes, as the worker's are.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile

from bench.measure import Clock
from bench.report import grid
from bench.rollups_before import BEFORE_DDL, BEFORE_PANEL_SQL
from bench.storage import DAY_MS, _groups, _settle, _timed, flow_batches
from bench.flows import START_MS
from finsa.storage.search_index import PROJECTIONS

__all__ = ["run"]

HOUR_MS = 3_600_000
RANGES = {"1 h": (START_MS + 23 * HOUR_MS, START_MS + DAY_MS - 1), "24 h": (START_MS, START_MS + DAY_MS - 1)}
TALKERS = ("talkers_top_1h", "talkers_top_1d")


def _panel(store, sql: str) -> list[str]:
    """p50 / p95 ms of the top-talkers panel over each range; the raw twin's answers."""
    from finsa.dashboards.panels import ALL_PANELS_BY_ID, bind

    panel, cells = ALL_PANELS_BY_ID["top_talkers"], []
    for from_ms, to_ms in RANGES.values():
        params = bind(panel, {"from_ms": str(from_ms), "to_ms": str(to_ms)}, to_ms)
        p50, p95, _ = _timed(store, sql, params, repeats=10, budget_s=5.0)
        cells.append(f"{p50:,.0f} / {p95:,.0f}")
    return cells


def _agreement(store) -> str:
    """Sources of the raw top ten the shipped panel returns with exact flows and bytes, per range."""
    from finsa.dashboards.panels import ALL_PANELS_BY_ID, bind

    panel, out = ALL_PANELS_BY_ID["top_talkers"], []
    for name, (from_ms, to_ms) in RANGES.items():
        params = bind(panel, {"from_ms": str(from_ms), "to_ms": str(to_ms)}, to_ms)
        got, raw = set(store.query(panel.sql, params).rows), set(store.query(panel.raw_sql, params).rows)
        out.append(f"{name} {len(got & raw)}/10")
    return ", ".join(out)


def _insert(flows: int, drop: tuple[str, ...], before: bool, panel_sql: str | None,
            source_skew: float | None = None) -> tuple[float, list[str], str]:
    """Rows per CPU second into a fresh store without the views ``drop`` (plus the old talkers
    roll-ups when ``before``); the panel's latencies read with ``panel_sql``; ``source_skew``:
    Zipf-distributed sources (:func:`bench.storage.flow_batches`)."""
    from finsa.storage.backend import open_store

    folder = tempfile.mkdtemp(prefix="finsa-bench-rollups-")
    try:
        with open_store(data_dir=folder) as store:
            store.migrate()
            for view in drop:
                if view in PROJECTIONS:  # not a roll-up: a flow search projection (storage.search_index)
                    store.command(f"ALTER TABLE flows DROP PROJECTION IF EXISTS {view}")
                else:
                    store.command(f"DROP VIEW IF EXISTS {view}_mv")
            for ddl in BEFORE_DDL if before else ():
                store.command(ddl)
            batches = list(_groups(flow_batches(flows, 100_000, source_skew), 5))  # made before the clock starts
            clock = Clock()
            for group in batches:
                store.insert_many(group)
            cpu_s = clock.cpu_s
            cpu_s += _settle(store)[0]
            cells = _panel(store, panel_sql) if panel_sql else ["", ""]
            agreement = _agreement(store) if not drop and not before and panel_sql else ""
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return flows / cpu_s, cells, agreement


#: The skew of the second shipped row's sources (Zipf), as real sources are: a few hosts busy,
#: most quiet (the first row's uniform sources are the heavy-hitter views' worst case).
SOURCE_SKEW = 1.1


def _variants() -> list[tuple[str, tuple[str, ...], bool, str | None, float | None]]:
    from finsa.dashboards.panels import ALL_PANELS_BY_ID
    from finsa.storage.rollups import CASCADES, FLOW_FED_ROLLUPS

    panel = ALL_PANELS_BY_ID["top_talkers"]
    views = sorted({"flows_1m", "flows_1h", *FLOW_FED_ROLLUPS, *CASCADES})
    return ([("every roll-up (shipped: heavy-hitter talkers)", (), False, panel.sql, None),
             (f"every roll-up, skewed sources (Zipf {SOURCE_SKEW})", (), False, panel.sql, SOURCE_SKEW),
             ("per-source talkers_1h + talkers_1d (before)", TALKERS, True, BEFORE_PANEL_SQL, None),
             ("without the talkers roll-ups (panel from raw flows)", TALKERS, False, panel.raw_sql, None)]
            + [(f"without {v}", (v,), False, None, None) for v in views if v not in TALKERS]
            + [("without the flow search projections", tuple(PROJECTIONS), False, None, None),
               ("no roll-up", tuple(views), False, None, None)])


def run(quick: bool, flows: int | None = None, rounds: int = 3) -> list[str]:
    n = flows or (500_000 if quick else 2_000_000)
    _insert(100_000, (), False, None)  # warm-up: the process's first store pays one-off costs
    variants = _variants()
    measured = [[_insert(n, drop, before, sql, skew) for _, drop, before, sql, skew in variants] for _ in range(rounds)]
    results = [(name, max(m[i][0] for m in measured), measured[-1][i][1], measured[-1][i][2],
                [m[i][0] for m in measured]) for i, (name, *_) in enumerate(variants)]
    base = results[0][1]
    rows = [[name, f"{rate:,.0f}", f"{statistics.median(each):,.0f}", " / ".join(f"{r / 1000:,.0f}k" for r in each),
             f"{rate / base:.2f}", *cells] for name, rate, cells, _, each in results]
    agreement = f"uniform sources: {results[0][3]}; skewed: {results[1][3]}"
    return [f"rollups: insert {n:,} flows, rows per CPU second (writes + their merges) by flow roll-up views present; "
            "top_talkers panel (whole sector) p50 / p95 wall ms as that store answers it\n"
            + grid(["store", "rows per CPU s (best)", "median", "each round", "ratio to shipped (best)", "top_talkers 1 h",
                    "top_talkers 24 h"],
                   rows)
            + f"\nshipped heavy-hitter panel vs its raw twin (sources of the raw top ten returned exact): {agreement}"]
