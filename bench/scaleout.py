"""``python -m bench scaleout``: the sizing model's scale-out step, for correctness and overhead.

One Tansu broker (:class:`~finsa.streams.broker.EmbeddedBroker`) with a 4-partition flow topic;
one store process (:mod:`bench.scaleout_store`: chdb on disk served over the ClickHouse HTTP
interface, as a ClickHouse server would be); 1, then 2, ``finsa worker`` processes (one consumer
group, every default detector, the store reached with ``--clickhouse-url``: clickhouse-connect,
:mod:`finsa.storage.server_backend`). The bench produces ``--flows`` synthetic flows
(:mod:`bench.flows`, 10k-row wire batches, spread round-robin over the partitions, unique flow
ids) once the workers have joined, and waits until the store holds them all (or a deadline).

Per worker count it prints: flows sent, rows stored, distinct flow ids stored (every flow
stored exactly once: the three equal), wall seconds from the first send to the last row
stored, and CPU seconds of the workers, the store process and the broker, with flows per CPU
second over all of them. On 2 cores two workers show correctness and the cost of splitting the
work (more processes, more inserts), not a speed-up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.flows import synthetic_flows
from bench.pipeline_stages import child_pids, process_cpu_s
from bench.report import grid

__all__ = ["run", "measure"]

ROOT = Path(__file__).resolve().parent.parent
BATCH_ROWS = 10_000


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def _start_store(folder: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.scaleout_store", str(folder)], cwd=ROOT, env=_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        raise RuntimeError(f"scaleout store did not start (exit {proc.poll()})")
    return proc, url


def _start_worker(bootstrap: str, url: str, state: Path, app_id: str, log: Path) -> subprocess.Popen:
    finsa = Path(sys.executable).with_name("finsa")
    command = [str(finsa)] if finsa.exists() else [sys.executable, "-m", "finsa.app.cli"]
    return subprocess.Popen(command + ["worker", "--broker", bootstrap, "--clickhouse-url", url, "--app-id", app_id,
                                       "--partitions", "4", "--session-timeout", "4", "--state-dir", str(state)],
                            cwd=ROOT, env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(log, "wb"))


def _produce(bootstrap: str, flows: int) -> None:
    from confluent_kafka import Producer

    from finsa import wire
    from finsa.kafka import producer_config

    producer = Producer(producer_config(bootstrap, "bench-scaleout"))
    topic = wire.TOPICS["flows"]
    for i, lo in enumerate(range(0, flows, BATCH_ROWS)):
        batch = synthetic_flows(min(BATCH_ROWS, flows - lo), seed=i, flow_id_base=lo + 1)
        producer.produce(topic, wire.encode_batch(batch), key=batch.batch_id, partition=i % 4)
        producer.poll(0)
    producer.flush(30)


def _stored(url: str) -> tuple[int, int]:
    from finsa.storage.server_backend import ServerStore

    with ServerStore(url) as store:
        count, distinct = store.query("SELECT count(), uniqExact(flow_id) FROM flows").rows[0]
    return int(count), int(distinct)


def measure(workers: int, flows: int, deadline_s: float = 120.0) -> dict:
    """Produce ``flows`` through ``workers`` worker processes into one HTTP-served store."""
    from finsa.app.run import topic_partitions
    from finsa.kafka import ensure_topics
    from finsa.streams.broker import EmbeddedBroker

    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        broker_pid = child_pids()[0]
        ensure_topics(broker.bootstrap, topic_partitions(4))
        store, url = _start_store(Path(tmp) / "store")
        procs = [_start_worker(broker.bootstrap, url, Path(tmp) / f"w{k}", "bench-scaleout", Path(tmp) / f"w{k}.log")
                 for k in range(workers)]
        try:
            time.sleep(12)  # workers start, migrate (nothing to do) and join the group
            for k, p in enumerate(procs):
                if p.poll() is not None:
                    raise RuntimeError(f"worker {k} exited: {(Path(tmp) / f'w{k}.log').read_text()[-2000:]}")
            pids = [p.pid for p in procs]
            cpu0 = {pid: process_cpu_s(pid) for pid in pids + [store.pid, broker_pid]}
            started = time.time()
            _produce(broker.bootstrap, flows)
            count = distinct = 0
            while time.time() - started < deadline_s:
                count, distinct = _stored(url)
                if count >= flows:
                    break
                time.sleep(0.5)
            wall_s = time.time() - started
            time.sleep(3)  # a late duplicate would show now
            count, distinct = _stored(url)
            cpu = {pid: process_cpu_s(pid) - cpu0[pid] for pid in cpu0}
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)
            store.stdin.close()
            store.wait(30)
    return {"workers": workers, "sent": flows, "stored": count, "distinct": distinct, "wall_s": wall_s,
            "worker_cpu_s": sum(cpu[p] for p in pids), "store_cpu_s": cpu[store.pid], "broker_cpu_s": cpu[broker_pid]}


def table(results: list[dict]) -> str:
    rows = []
    for r in results:
        total = r["worker_cpu_s"] + r["store_cpu_s"] + r["broker_cpu_s"]
        rows.append([str(r["workers"]), f"{r['sent']:,}", f"{r['stored']:,}", f"{r['distinct']:,}",
                     "yes" if r["sent"] == r["stored"] == r["distinct"] else "NO", f"{r['wall_s']:.1f}",
                     f"{r['worker_cpu_s']:.1f}", f"{r['store_cpu_s']:.1f}", f"{r['broker_cpu_s']:.1f}",
                     f"{r['stored'] / max(total, 1e-9):,.0f}"])
    head = ["workers", "sent", "stored", "distinct flow ids", "exactly once", "wall s", "workers CPU s",
            "store CPU s", "broker CPU s", "flows per CPU s (all)"]
    return ("scaleout: finsa worker processes on a 4-partition flow topic (Tansu) -> one chdb store served "
            "over the ClickHouse HTTP interface\n" + grid(head, rows))


def run(quick: bool, flows: int | None = None) -> list[str]:
    n = flows or (40_000 if quick else 1_000_000)
    return [table([measure(k, n) for k in (1, 2)])]
