"""Storage benchmark: ingest rate, bytes per flow, and every dashboard panel's latency, raw vs roll-up.

``open_store(data_dir=tmp)`` is migrated, then N synthetic flows (:mod:`bench.flows`, spread
over 24 hours, generated batch by batch so memory stays bounded at any N) are written in time
order: wire batches of 100k rows, ``write_batches`` of them per ``Store.insert_many`` (one
Native block, one part). N/1000 alerts follow, and a few hundred rows of every table later
stages fill (:mod:`bench.storage_fill`). Ingest rate is rows per CPU second of this process
(chdb's threads, its merges and every roll-up view included, the making of the synthetic flows
left out: "per core"), with the wall rate beside it; after the load the store is left to finish
its merges, and that CPU is counted too.

Every panel of :data:`finsa.dashboards.panels.ALL_PANELS` and ``WEB_PANELS`` is then run over the last hour and
over the whole day (parameters bound by :func:`~finsa.dashboards.panels.bind`, the whole
sector), and so is its raw twin (``Panel.raw_sql``) where it reads a roll-up: wall ms, p50 and
p95 over repeats (at least 3, at most ``repeats`` or about 10 s each). A panel whose tables are
empty is listed as not loaded. Bytes per flow come from ``system.parts`` / ``system.parts_columns``.
The reference peer is pyarrow writing the same batches to a zstd Parquet file (at most 10M rows).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from bench.flows import INSTITUTIONS, START_MS, synthetic_flows
from bench.measure import Clock
from bench.report import Result, grid, table
from bench.storage_fill import fill_small_tables
from finsa.wire import ALERT, FLOW, RecordBatch, decode_batch, encode_batch

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


def flow_batches(flows: int, batch_rows: int, source_skew: float | None = None) -> Iterator[RecordBatch]:
    """The benchmark's flows, one wire batch at a time, in time order over one day, each as a worker
    has it: decoded from its wire bytes (a text column holds one object per distinct value);
    ``source_skew``: Zipf-distributed sources (:func:`bench.flows.synthetic_flows`)."""
    span = max(DAY_MS * batch_rows // max(flows, 1), 1)
    for i, lo in enumerate(range(0, flows, batch_rows)):
        made = synthetic_flows(min(batch_rows, flows - lo), seed=i, start_ms=START_MS + i * span, span_ms=span,
                               flow_id_base=lo + 1, source_skew=source_skew)
        yield decode_batch(encode_batch(made), FLOW)


def _groups(batches: Iterator[RecordBatch], size: int) -> Iterator[list[RecordBatch]]:
    group: list[RecordBatch] = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def _merges_running(store) -> int:
    return int(store.query("SELECT count() FROM system.merges WHERE database = currentDatabase()").rows[0][0])


def _settle(store, limit_s: float = 900.0) -> tuple[float, float]:
    """Wait until the store has no merge running (at most ``limit_s``): its CPU and wall seconds."""
    clock = Clock()
    quiet = 0
    while quiet < 3 and clock.wall_s < limit_s:
        quiet = quiet + 1 if _merges_running(store) == 0 else 0
        time.sleep(1.0)
    return clock.cpu_s, clock.wall_s


def _load(store, flows: int, batch_rows: int, write_batches: int) -> list[Result]:
    """Insert CPU = the process's CPU over the whole load (background merges included) less the
    main thread's CPU making the synthetic flows; wall = the insert calls' elapsed time."""
    whole, generating_s, wall_s = Clock(), 0.0, 0.0
    groups = _groups(flow_batches(flows, batch_rows), write_batches)
    while True:
        t0 = time.thread_time()
        group = next(groups, None)
        generating_s += time.thread_time() - t0
        if group is None:
            break
        clock = Clock()
        store.insert_many(group)
        wall_s += clock.wall_s
    cpu_s = whole.cpu_s - generating_s
    settle_cpu_s, settle_wall_s = _settle(store)
    rows = batch_rows * write_batches
    return [Result("finsa", flows, cpu_s, "cpu", f"Store.insert_many, {rows:,}-row writes, merges meanwhile; "
                   f"{flows / wall_s:,.0f} rows/s wall"),
            Result("finsa + merges", flows, cpu_s + settle_cpu_s, "cpu",
                   f"and the merges still running after it ({settle_wall_s:.0f} s wall)")]


def _parquet(flows: int, batch_rows: int, folder: str) -> tuple[Result, float]:
    """The same batches written as a zstd Parquet file with pyarrow: a columnar-file reference."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = f"{folder}/flows.parquet"
    cpu_s = 0.0
    writer = None
    for batch in flow_batches(flows, batch_rows):
        t0 = time.process_time()
        arrays = {k: pa.array(v.view("S16").ravel() if v.ndim == 2 else v) for k, v in batch.columns.items()}
        part = pa.table(arrays)
        writer = writer or pq.ParquetWriter(path, part.schema, compression="zstd")
        writer.write_table(part)
        cpu_s += time.process_time() - t0
    writer.close()
    size = Path(path).stat().st_size
    return Result("pyarrow parquet", flows, cpu_s, "cpu", "zstd file, same batches (reference, no server)"), size / flows


_TABLES = re.compile(r"\b(?:FROM|JOIN)\s+([a-z_][a-z_0-9]*)", re.IGNORECASE)


def tables_read(sql: str) -> list[str]:
    """Tables a panel's SQL names after FROM / JOIN, in order, once each.

    >>> tables_read("SELECT 1 FROM flows_1m AS a JOIN (SELECT x FROM institutions) USING x")
    ['flows_1m', 'institutions']
    """
    return list(dict.fromkeys(t for t in _TABLES.findall(sql) if t.lower() not in ("select",)))


def _timed(store, sql: str, params: dict, repeats: int, budget_s: float = 10.0) -> tuple[float, float, int]:
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() - started < budget_s):
        t0 = time.perf_counter()
        store.query(sql, params)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95)), len(times)


def _panel_row(store, panel, ranges: dict, repeats: int, filled: set[str]) -> list[str]:
    from finsa.dashboards.panels import bind

    raw_sql = getattr(panel, "raw_sql", "")
    reads, raw_reads = tables_read(panel.sql), tables_read(raw_sql)
    row = [panel.id, ",".join(reads)]
    if not set(reads) <= filled:
        return row + ["not loaded: " + ",".join(sorted(set(reads) - filled))] + [""] * 8
    runs = 0
    for sql in (panel.sql, raw_sql):
        for from_ms, to_ms in ranges.values():
            if not sql:
                row += ["", ""]
                continue
            values = {"from_ms": str(from_ms), "to_ms": str(to_ms)}
            if "entity" in panel.parameters:
                values["entity"] = "203.0.113.7"
            p50, p95, n = _timed(store, sql, bind(panel, values, now_ms=to_ms), repeats)
            row += [f"{p50:.1f}", f"{p95:.1f}"]
            runs = max(runs, n)
        if sql is panel.sql:
            row.append(",".join(raw_reads))
    return row + [str(runs)]


def _latencies(store, repeats: int) -> list[list[str]]:
    from finsa.dashboards.panels import ALL_PANELS, WEB_PANELS

    panels = list({p.id: p for p in (*ALL_PANELS, *WEB_PANELS)}.values())
    tables = [r[0] for r in store.query("SELECT name FROM system.tables WHERE database = currentDatabase()").rows]
    filled = {t for t in tables if store.query(f"SELECT count() > 0 FROM {t}").rows[0][0]}
    end = START_MS + DAY_MS
    ranges = {"1h": (end - 3_600_000, end), "24h": (START_MS, end)}
    return [_panel_row(store, panel, ranges, repeats, filled) for panel in panels]


def _bytes(store) -> tuple[list[list[str]], float]:
    parts = store.query("SELECT table, sum(data_compressed_bytes), sum(data_uncompressed_bytes), sum(rows), count() "
                        "FROM system.parts WHERE database = currentDatabase() AND active GROUP BY table").rows
    by_table = {t: (int(c), int(u), int(r), int(k)) for t, c, u, r, k in parts}
    flows = max(by_table.get("flows", (0, 0, 1, 0))[2], 1)
    rows = [[t, f"{r:,}", f"{k}", f"{c / max(r, 1):.1f}", f"{u / max(r, 1):.1f}", f"{c / flows:.2f}"]
            for t, (c, u, r, k) in sorted(by_table.items(), key=lambda kv: -kv[1][0]) if c > 0]
    return rows, by_table.get("flows", (0, 0, 1, 0))[0] / flows


def _column_bytes(store, top: int = 8) -> str:
    got = store.query("SELECT column, sum(column_data_compressed_bytes) / sum(rows) AS b FROM system.parts_columns "
                      "WHERE database = currentDatabase() AND table = 'flows' AND active "
                      f"GROUP BY column ORDER BY b DESC LIMIT {top}").rows
    return ", ".join(f"{name} {b:.2f}" for name, b in got)


def run(quick: bool, flows: int | None = None, batch_rows: int = 100_000, write_batches: int = 5) -> list[str]:
    from finsa.storage.backend import open_store

    n = flows or (500_000 if quick else 2_000_000)
    repeats = 5 if quick else 20
    folder = tempfile.mkdtemp(prefix="finsa-bench-store-")
    try:
        with open_store(data_dir=folder) as store:
            store.migrate()
            insert = _load(store, n, batch_rows, write_batches)
            store.insert(synthetic_alerts(max(1, n // 1000)))
            fill_small_tables(store)
            _settle(store)
            latency = _latencies(store, repeats)
            sizes, per_flow = _bytes(store)
            columns = _column_bytes(store)
        parquet, parquet_bytes = _parquet(min(n, 10_000_000), batch_rows, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out = [table(f"storage: insert {n:,} flows into chdb (ClickHouse in process, every roll-up view on)", "row",
                 insert + [parquet])]
    headers = ["panel", "reads", "1h p50", "1h p95", "24h p50", "24h p95", "raw twin reads",
               "raw 1h p50", "raw 1h p95", "raw 24h p50", "raw 24h p95", "runs"]
    out.append(f"storage: dashboard panel latency, wall ms, {n:,} flows over 24 h + {max(1, n // 1000):,} alerts, "
               f"whole sector; raw twin = the same question on the raw table\n{grid(headers, latency)}")
    out.append(f"storage: bytes on disk (system.parts, active parts): flows {per_flow:.1f} B/flow; parquet zstd "
               f"{parquet_bytes:.1f} B/flow\n" + grid(["table", "rows", "parts", "B/row", "raw B/row", "B per flow"], sizes)
               + f"\nflows, largest columns (B/flow): {columns}")
    return out
