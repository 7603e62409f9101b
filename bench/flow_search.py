"""Flow search at a few million flows: filters on destination vs source addresses, with and
without the flows table's destination skip index (:func:`finsa.storage.triage` migrations).

    python -m bench.flow_search --flows 3000000

Prints, per filter, the median of 3 runs of the search's rows query (LIMIT 500) and its
per-minute chart over 24 h, and the granules ClickHouse read. The 100M-flow run is the
performance issue's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from bench.flows import START_MS, synthetic_flows
from finsa.dashboards.soc.flowsearch import FlowQuery, search_sql
from finsa.storage.backend import open_store

DAY_MS = 86_400_000
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flows", type=int, default=3_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(data_dir=folder)
        store.migrate()
        store.command("ALTER TABLE flows DROP INDEX IF EXISTS dst_ip_bloom")
        step = 500_000
        t0 = time.perf_counter()
        for k in range(0, args.flows, step):
            store.insert(synthetic_flows(min(step, args.flows - k), seed=k, start_ms=START_MS, span_ms=DAY_MS,
                                         flow_id_base=k + 1))
        print(f"{args.flows} flows over 24 h stored in {time.perf_counter() - t0:.0f} s")
        store.command("OPTIMIZE TABLE flows FINAL")  # same parts before and after the index
        measure(store)  # warm the caches: both rounds run warm
        before = measure(store)
        store.migrate()  # puts the index back and materialises it
        measure(store)
        after = measure(store)
        for name in FILTERS:
            (r0, c0, n), (r1, c1, _) = before[name], after[name]
            print(f"{name:<24} rows {n:>4}: {r0 * 1000:6.0f} -> {r1 * 1000:6.0f} ms   per-minute chart "
                  f"{c0 * 1000:6.0f} -> {c1 * 1000:6.0f} ms (no index -> bloom index)")
        store.close()


if __name__ == "__main__":
    main()
