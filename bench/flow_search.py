"""Flow search: filters on destination vs source addresses, with and without the flows table's
destination skip index (:func:`finsa.storage.triage` migrations), and at scale on a kept store.

    python -m bench.flow_search --flows 3000000
    python -m bench.flow_search --store /work/bigstore --flows 100000000 [--repeats 7]

Without ``--store``: a temporary store of ``--flows`` flows, each filter's rows query (LIMIT 500)
and per-minute chart over 24 h, median of 3 runs, before and after the index and the address
projections (:mod:`finsa.storage.search_index`); the rows query is built the same way in both.

With ``--store DIR`` (filled once by :mod:`bench.bigstore`, reused): every filter of
:data:`AT_SCALE` (equality, ``in (...)`` lists and CIDR ranges on ``src_ip`` and ``dst_ip``,
alone and with ports) over the whole 24 h, through the web view's own path -- the filter
language, :func:`~finsa.dashboards.soc.flowsearch.search_sql`, the user's tenant view from
:class:`~finsa.dashboards.reads.PanelReads` (audited) -- for a regulator (whole sector) and for
one institution's analyst. Wall ms of the rows query, of the chart query and of both together
(one ``GET /api/flows``), p50/p95 over ``--repeats`` runs after a first run, and that first run
(rows + chart) apart: ClickHouse's query condition cache remembers which granules a filter
did not match, so a repeated filter is faster than a new one.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from bench.flows import START_MS, synthetic_flows
from finsa.dashboards.soc.flowsearch import FlowQuery, search_sql
from finsa.storage.backend import open_store
from finsa.storage.search_index import PROJECTIONS

DAY_MS = 86_400_000
#: At scale: every address field, equality, lists and CIDR ranges, alone and with ports.
#: Destinations are 198.18.x.y drawn from a Zipf law (198.18.0.1 is in a quarter of the flows,
#: 198.18.250.1 in a handful); sources are 10.<institution>.x.y (bank-a is 10.0.0.0/16).
AT_SCALE = {
    "dst_ip = rare": "dst_ip = 198.18.250.1",
    "dst_ip = common": "dst_ip = 198.18.0.1",
    "dst_ip = absent": "dst_ip = 192.0.2.1",
    "dst_ip in (3 rare)": "dst_ip in (198.18.250.1, 198.18.251.7, 198.18.252.9)",
    "dst_ip in /24 and dst_port": "dst_ip in 198.18.200.0/24 and dst_port = 443",
    "dst_ip in /20 and dst_port list": "dst_ip in 198.18.128.0/20 and dst_port in (22, 3389)",
    "src_ip = one host": "src_ip = 10.0.1.1",
    "src_ip in (2 hosts)": "src_ip in (10.0.1.1, 10.0.7.7)",
    "src_ip in /24 and dst_port list": "src_ip in 10.0.1.0/24 and dst_port in (22, 3389)",
    "src_ip in external /24": "src_ip in 203.0.113.0/24",
    "src_ip or dst_ip": "src_ip = 10.0.1.1 or dst_ip = 198.18.250.1",
}
FILTERS = {
    "rare destination": "dst_ip = 198.18.250.1",
    "common destination": "dst_ip = 198.18.0.1",
    "destination /24 + port": "dst_ip in 198.18.200.0/24 and dst_port = 443",
    "source address": "src_ip = 10.0.1.1",
}


def _time(store, sql: str, params: dict) -> tuple[float, int]:
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        rows = store.query(sql, params).rows
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), len(rows)


def measure(store) -> dict[str, tuple[float, float, int]]:
    out = {}
    for name, text in FILTERS.items():
        rows_sql, chart_sql, params = search_sql(FlowQuery(text, START_MS, START_MS + DAY_MS, 500))
        t_rows, n = _time(store, rows_sql, params)
        t_chart, _ = _time(store, chart_sql, params)
        out[name] = (t_rows, t_chart, n)
    return out


def _wall_ms(run, sql: str, params: dict) -> tuple[float, int]:
    """Wall ms and rows; rows -1 when the search's own time limit (MAX_SECONDS) stopped it."""
    from finsa.errors import StorageError

    t0 = time.perf_counter()
    try:
        rows = len(run(sql, params).rows)
    except StorageError as exc:
        if "TIMEOUT_EXCEEDED" not in str(exc):
            raise
        rows = -1
    return (time.perf_counter() - t0) * 1000, rows


def _pcts(values: list[float]) -> str:
    return f"{float(np.percentile(values, 50)):7.0f} {float(np.percentile(values, 95)):7.0f}"


def at_scale(store, repeats: int, filters: dict[str, str] | None = None) -> list[str]:
    """One line per (user, filter): rows, then p50/p95 wall ms of rows, chart and both."""
    from bench.panels import _users
    from finsa.dashboards.reads import PanelReads

    reads = PanelReads(store)
    users = _users()
    out = [f"{'user':<10} {'filter':<32} {'rows':>5}  rows p50/p95  chart p50/p95  search p50/p95  first run  (wall ms)"]
    print(out[0], flush=True)
    for user in (users[0], users[5]):  # a regulator (whole sector), bank-a's analyst
        view = reads.view_for(user)
        for name, text in (filters or AT_SCALE).items():
            rows_sql, chart_sql, params = search_sql(FlowQuery(text, START_MS, START_MS + DAY_MS, 500))
            t_rows, t_chart, n = [], [], 0
            for _ in range(repeats + 1):  # the first run is reported apart
                a, n = _wall_ms(view.query, rows_sql, params)
                b, m = _wall_ms(view.query, chart_sql, params)
                t_rows.append(a)
                t_chart.append(b)
                if min(n, m) < 0:  # stopped at the time limit: once is enough
                    break
            first = t_rows[0] + t_chart[0]  # a new filter: no query condition cache for it yet
            if len(t_rows) > 1:
                t_rows, t_chart = t_rows[1:], t_chart[1:]
            both = [a + b for a, b in zip(t_rows, t_chart)]
            who = "sector" if user.role == "regulator" else user.institution
            limit = "  (stopped at the 10 s limit)" if min(n, m) < 0 else ""
            out.append(f"{who:<10} {name:<32} {n:>5}  {_pcts(t_rows)}  {_pcts(t_chart)}  {_pcts(both)}  "
                       f"{first:7.0f}{limit}")
            print(out[-1], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flows", type=int, default=3_000_000)
    parser.add_argument("--store", default="", help="a kept store (bench.bigstore): measure AT_SCALE on it")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--before", action="store_true",
                        help="with --store: no migration, and the search as one statement (no projection step)")
    args = parser.parse_args()
    if args.store:
        from bench.bigstore import filled_store
        from finsa.dashboards.soc import flowsearch

        if args.before:
            flowsearch.PROJECTED = []  # the search as one statement, as before the projection steps
        with filled_store(args.store, args.flows, migrate=not args.before) as store:
            at_scale(store, args.repeats)
        return
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(data_dir=folder)
        store.migrate()
        store.command("ALTER TABLE flows DROP INDEX IF EXISTS dst_ip_bloom")
        for name in PROJECTIONS:
            store.command(f"ALTER TABLE flows DROP PROJECTION IF EXISTS {name}")
        step = 500_000
        t0 = time.perf_counter()
        for k in range(0, args.flows, step):
            store.insert(synthetic_flows(min(step, args.flows - k), seed=k, start_ms=START_MS, span_ms=DAY_MS,
                                         flow_id_base=k + 1))
        print(f"{args.flows} flows over 24 h stored in {time.perf_counter() - t0:.0f} s")
        store.command("OPTIMIZE TABLE flows FINAL")  # same parts before and after the index
        measure(store)  # warm the caches: both rounds run warm
        before = measure(store)
        store.migrate()  # puts the index and the projections back and materialises them
        measure(store)
        after = measure(store)
        for name in FILTERS:
            (r0, c0, n), (r1, c1, _) = before[name], after[name]
            print(f"{name:<24} rows {n:>4}: {r0 * 1000:6.0f} -> {r1 * 1000:6.0f} ms   per-minute chart "
                  f"{c0 * 1000:6.0f} -> {c1 * 1000:6.0f} ms (no index -> bloom index + projections)")
        store.close()


if __name__ == "__main__":
    main()
