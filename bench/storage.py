"""Storage benchmark: inserts into the chdb store, dashboard panel latencies, bytes per flow.

``open_store(data_dir=tmp)`` is migrated, then N synthetic flows (:mod:`bench.flows`, spread
over 24 hours, written in time order in batches of 100k rows) and N/1000 alerts are inserted
through ``Store.insert``. Insert rate is rows per CPU second of this process (chdb's threads
included: "per core"), with the wall rate beside it. Every panel of
:data:`finsa.dashboards.panels.PANELS` is then run with its parameters (bound by
:func:`finsa.dashboards.panels.bind`) over the last hour and over the whole day; latencies are
wall milliseconds, p50 and p95 over repeats. Bytes per flow come from ``system.parts``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.flows import INSTITUTIONS, START_MS, synthetic_flows
from bench.measure import Clock
from bench.report import Result, grid, table
from finsa.wire import ALERT, RecordBatch

__all__ = ["run", "synthetic_alerts"]

DAY_MS = 86_400_000
_DETECTORS = [("portscan", "T1046"), ("synflood", "T1499.001"), ("bruteforce", "T1110"), ("anomaly", "anomaly")]


def synthetic_alerts(n: int, seed: int = 0, start_ms: int = START_MS, span_ms: int = DAY_MS) -> RecordBatch:
    """An ALERT batch of ``n`` rows from a few hundred attacker addresses."""
    rng = np.random.default_rng(seed)
    det = rng.integers(0, len(_DETECTORS), n)
    t = np.sort(start_ms + rng.integers(0, span_ms, n))
    return ALERT.make_batch({
        "alert_id": [f"bench-{seed}-{i}" for i in range(n)], "time_ms": t, "first_seen_ms": t - 60_000,
        "institution_id": INSTITUTIONS[rng.integers(0, len(INSTITUTIONS), n)],
        "entity": [f"203.0.113.{k}" for k in rng.integers(1, 255, n)], "entity_kind": "src_ip",
        "target": "many", "detector": [_DETECTORS[d][0] for d in det], "technique": [_DETECTORS[d][1] for d in det],
        "severity": rng.integers(2, 6, n), "score": rng.random(n), "confidence": rng.random(n), "evidence": "{}",
    })


def _load(store, flows: int, batch_rows: int) -> Result:
    span = DAY_MS * batch_rows // max(flows, 1)
    cpu_s = wall_s = 0.0
    for i, lo in enumerate(range(0, flows, batch_rows)):
        batch = synthetic_flows(min(batch_rows, flows - lo), seed=i, start_ms=START_MS + i * span,
                                span_ms=max(span, 1), flow_id_base=lo + 1)
        clock = Clock()
        store.insert(batch)
        cpu_s += clock.cpu_s
        wall_s += clock.wall_s
    return Result("finsa", flows, cpu_s, "cpu", f"Store.insert, {batch_rows:,}-row batches; "
                  f"{flows / wall_s:,.0f} rows/s wall")


def _parquet(flows: int, batch_rows: int, folder: str) -> tuple[Result, float]:
    """The same batches written as a zstd Parquet file with pyarrow: a columnar-file reference."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = f"{folder}/flows.parquet"
    cpu_s = 0.0
    writer = None
    for i, lo in enumerate(range(0, flows, batch_rows)):
        batch = synthetic_flows(min(batch_rows, flows - lo), seed=i, flow_id_base=lo + 1)
        t0 = time.process_time()
        arrays = {k: pa.array(v.view("S16").ravel() if v.ndim == 2 else v) for k, v in batch.columns.items()}
        part = pa.table(arrays)
        writer = writer or pq.ParquetWriter(path, part.schema, compression="zstd")
        writer.write_table(part)
        cpu_s += time.process_time() - t0
    writer.close()
    size = Path(path).stat().st_size
    return Result("pyarrow parquet", flows, cpu_s, "cpu", "zstd file, same batches (reference, no server)"), size / flows


def _latencies(store, repeats: int) -> list[list[str]]:
    from finsa.dashboards.panels import PANELS, bind

    end = START_MS + DAY_MS
    ranges = {"1h": (end - 3_600_000, end), "24h": (START_MS, end)}
    rows = []
    for panel in PANELS:
        row = [panel.id]
        for from_ms, to_ms in ranges.values():
            params = bind(panel, {"from_ms": str(from_ms), "to_ms": str(to_ms)}, now_ms=to_ms)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                store.query(panel.sql, params)
                times.append((time.perf_counter() - t0) * 1000)
            row += [f"{np.percentile(times, 50):.1f}", f"{np.percentile(times, 95):.1f}"]
        rows.append(row)
    return rows


def _bytes_per_row(store, table_name: str) -> tuple[float, float, int]:
    got = store.query("SELECT sum(data_compressed_bytes), sum(data_uncompressed_bytes), sum(rows) FROM system.parts "
                      "WHERE database = currentDatabase() AND table = {t:String} AND active", {"t": table_name})
    compressed, raw, rows = got.rows[0]
    return compressed / max(rows, 1), raw / max(rows, 1), int(rows)


def run(quick: bool, flows: int | None = None, batch_rows: int = 100_000) -> list[str]:
    from finsa.storage.backend import open_store

    n = flows or (500_000 if quick else 2_000_000)
    folder = tempfile.mkdtemp(prefix="finsa-bench-store-")
    try:
        with open_store(data_dir=folder) as store:
            store.migrate()
            insert = _load(store, n, batch_rows)
            store.insert(synthetic_alerts(max(1, n // 1000)))
            latency = _latencies(store, 5 if quick else 20)
            per_flow = _bytes_per_row(store, "flows")
        parquet, parquet_bytes = _parquet(n, batch_rows, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out = [table(f"storage: insert {n:,} flows into chdb (ClickHouse in process)", "row", [insert, parquet])]
    headers = ["panel", "1h p50 ms", "1h p95 ms", "24h p50 ms", "24h p95 ms"]
    out.append(f"storage: dashboard panel latency, wall ms, {n:,} flows over 24 h + {max(1, n // 1000):,} alerts "
               f"({5 if quick else 20} runs each)\n{grid(headers, latency)}")
    out.append("storage: bytes per flow on disk (system.parts, active parts)\n" + grid(
        ["table", "rows", "compressed bytes/row", "uncompressed bytes/row"],
        [["flows", f"{per_flow[2]:,}", f"{per_flow[0]:.1f}", f"{per_flow[1]:.1f}"],
         ["(parquet zstd file)", f"{n:,}", f"{parquet_bytes:.1f}", ""]]))
    return out
