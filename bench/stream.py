"""The stream worker end to end, on real parts: Tansu broker -> Faust worker (decode, detect,
sector picture, chdb store).

Flow batches are produced at a target rate, each flow's ``last_seen_ms`` stamped when it is sent
(as a collector exports a flow when it ends). The worker's processor records, right after each
store write, how long ago each stored flow ended: the latency from flow end to queryable. Reported:
the rate the worker sustained (wall, and per CPU second of this process, which runs the worker and
the producer thread), and the latency's p50/p99. Goals (issue 7): p99 <= 5 s at 50,000 flows/s;
>= 100,000 flows/s per core end to end.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.flows import synthetic_flows
from bench.measure import current_rss_bytes
from bench.report import grid


def _producer(bootstrap: str, flows, rate: float, seconds: float, batch_rows: int, stop: threading.Event,
              progress: dict | None = None, compress: bool = True) -> int:
    """Offer ``rate`` flows/s of ``flows`` in ``batch_rows`` batches, compressed as agents send them by default."""
    from confluent_kafka import Producer

    from finsa import wire
    from finsa.kafka import producer_config

    producer = Producer(producer_config(bootstrap, "bench"))
    sent, t0, i = 0, time.monotonic(), 0
    institutions = flows.columns["institution_id"]
    while not stop.is_set() and time.monotonic() - t0 < seconds:
        due = t0 + sent / rate
        if time.monotonic() < due:
            time.sleep(max(min(due - time.monotonic(), 0.05), 0.0))
            continue
        lo = (i * batch_rows) % max(len(flows) - batch_rows, 1)
        part = flows.take(np.arange(lo, lo + batch_rows))
        now = int(time.time() * 1000)
        part.columns["first_seen_ms"] = np.full(batch_rows, now - 1000, dtype=np.int64)
        part.columns["last_seen_ms"] = np.full(batch_rows, now, dtype=np.int64)
        producer.produce(wire.TOPICS["flows"], wire.encode_batch(part, compress=compress), key=str(institutions[lo]).encode())
        producer.poll(0)
        sent += batch_rows
        i += 1
        if progress is not None:
            progress["sent"] = sent
    producer.flush(30)
    return sent


def measure(rate: float, seconds: float, batch_rows: int = 5000) -> dict:
    """Offer ``rate`` flows/s for ``seconds``; return what the worker did."""
    from finsa.detectors.engine import DetectionEngine
    from finsa.kafka import ensure_topics
    from finsa.storage.backend import open_store
    from finsa.streams.faust_app import WorkerSettings
    from finsa.streams.broker import EmbeddedBroker
    from finsa.app.run import topic_partitions
    from finsa.streams.processor import FlowProcessor
    from finsa.streams.service import StreamService

    latencies: list[np.ndarray] = []

    def observe(flows) -> None:  # called right after the store write
        latencies.append(int(time.time() * 1000) - np.asarray(flows.columns["last_seen_ms"]))

    flows = synthetic_flows(200_000)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        ensure_topics(broker.bootstrap, topic_partitions(4))
        store = open_store(data_dir=Path(tmp) / "store")
        store.migrate()
        processor = FlowProcessor(store, DetectionEngine(), flow_observers=[observe])
        service = StreamService(WorkerSettings(broker.bootstrap, app_id="bench", datadir=Path(tmp) / "faust",
                                               session_timeout_s=4), processor)
        stop = threading.Event()
        result: dict = {}

        progress = {"sent": 0}
        samples: list[tuple[float, int, int]] = []  # (seconds, RSS bytes, flows sent but not yet stored)

        async def main() -> None:
            await service.start()
            await asyncio.sleep(4)  # consumer-group join
            cpu0, wall0 = time.process_time(), time.monotonic()
            sender = threading.Thread(target=lambda: result.update(
                sent=_producer(broker.bootstrap, flows, rate, seconds, batch_rows, stop, progress)))
            sender.start()
            next_sample = wall0
            while sender.is_alive():
                if time.monotonic() >= next_sample:
                    next_sample += 1.0
                    stored = sum(map(len, latencies))
                    samples.append((time.monotonic() - wall0, current_rss_bytes(), progress["sent"] - stored))
                await asyncio.sleep(0.2)
            deadline = time.monotonic() + 60
            while sum(map(len, latencies)) < result["sent"] and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            result.update(cpu_s=time.process_time() - cpu0, wall_s=time.monotonic() - wall0)
            await service.stop()

        asyncio.run(main())
        store.close()
    done = np.concatenate(latencies) if latencies else np.zeros(1)
    result.update(stored=int(sum(map(len, latencies))), p50_ms=float(np.percentile(done, 50)),
                  p99_ms=float(np.percentile(done, 99)), samples=samples,
                  final_lag=int(result["sent"] - sum(map(len, latencies))))
    return result


def run(quick: bool, rates: tuple[float, ...] | None = None) -> list[str]:
    seconds = 10 if quick else 30
    rows = []
    for rate in rates or ((10_000, 25_000) if quick else (25_000, 50_000, 100_000)):
        r = measure(rate, seconds)
        rows.append([f"{rate:,.0f}", f"{r['stored']:,}", f"{r['stored'] / r['wall_s']:,.0f}",
                     f"{r['stored'] / max(r['cpu_s'], 1e-9):,.0f}", f"{r['p50_ms']:,.0f}", f"{r['p99_ms']:,.0f}"])
    return ["## stream worker end to end (Tansu -> Faust -> detectors -> chdb), flows offered for "
            f"{seconds} s\n" + grid(["offered flows/s", "stored", "stored/s wall", "per CPU s",
                                     "latency p50 ms", "latency p99 ms"], rows)]
