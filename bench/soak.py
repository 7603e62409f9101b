"""The soak: the stream worker under steady load for a long time, watching its memory.

``python -m bench soak [--seconds S] [--rate R]``: Tansu -> Faust -> detectors -> chdb at 2x the
embedded design rate (20,000 flows/s) for 10 minutes by default. What is measured is the worker's
memory, not the bench's: the producer runs in its own process (its librdkafka queue and the
synthetic flows are not in the worker's RSS), and the bench's own bookkeeping in the worker
process is bounded (a fixed latency histogram of 10 ms buckets and counters, not a list of every
flow's latency). Reported: RSS at start (after the consumer joined), the peak of each half, the
growth of the second half's peak over the first's, lost flows, the largest lag (sent, not yet
stored), p99 flow end -> stored, the broker's RSS, and the RSS series (one sample a minute).

``FINSA_SOAK_WORKER="trim_after_group=0,purge_store_after_group=0"`` overrides worker settings
(to compare a run without a mechanism). Also reported: flows stored per second, the wall seconds
the worker spent handing memory back after store writes (glibc trim, jemalloc purge), the load
average, and the growth between the halves by peaks, by the median and by the mean of the
per-minute peaks.

``FINSA_SOAK_TRACE=1`` adds a diagnosis every ``FINSA_SOAK_TRACE_S`` seconds (default 60): the
Python heap (tracemalloc) diffed against the first snapshot by traceback, live objects by type
against the first count, and glibc's malloc statistics (heap in use vs held), to tell Python
objects from allocator retention.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import multiprocessing
import os
import re
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np

from bench.measure import current_rss_bytes
from bench.report import grid

BUCKET_MS = 10
BUCKETS = 30_000  # 0 .. 300 s; later latencies land in the last bucket


def _produce(bootstrap: str, rate: float, seconds: float, batch_rows: int, sent) -> None:
    """In the producer process: offer ``rate`` flows/s, counting into the shared ``sent``."""
    import threading

    from bench.flows import synthetic_flows
    from bench.stream import _producer

    progress = _Progress(sent)
    _producer(bootstrap, synthetic_flows(200_000), rate, seconds, batch_rows, threading.Event(), progress)


class _Progress:
    """The ``progress`` dict ``bench.stream._producer`` writes, backed by a shared integer."""

    def __init__(self, sent) -> None:
        self.sent = sent

    def __setitem__(self, key: str, value: int) -> None:
        self.sent.value = value


class _Latency:
    """Flow end -> stored latencies as a fixed histogram (memory does not grow with the run)."""

    def __init__(self) -> None:
        self.counts = np.zeros(BUCKETS, dtype=np.int64)
        self.stored = 0

    def observe(self, flows) -> None:
        ms = int(time.time() * 1000) - np.asarray(flows.columns["last_seen_ms"])
        self.counts += np.bincount(np.clip(ms // BUCKET_MS, 0, BUCKETS - 1), minlength=BUCKETS)
        self.stored += len(ms)

    def percentile_ms(self, q: float) -> float:
        if not self.stored:
            return 0.0
        index = int(np.searchsorted(np.cumsum(self.counts), self.stored * q / 100))
        return float((index + 1) * BUCKET_MS)


class _Malloc(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def malloc_mib() -> tuple[float, float]:
    """glibc's (bytes in use, bytes held free) in MiB: ``mallinfo2``; (0, 0) where absent."""
    try:
        fn = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return 0.0, 0.0
    fn.restype = _Malloc
    info = fn()
    return (info.uordblks + info.hblkhd) / 2**20, info.fordblks / 2**20


def _chdb_mib(store) -> tuple[float, float, float]:
    """chdb's ClickHouse memory in MiB: what it tracks (``MemoryTracking``), what its merges track
    (``MergesMutationsMemoryTracking``) and what its jemalloc holds resident (``resident:`` of
    ``system.jemalloc_stats``; 0 where absent)."""
    rows = dict(store.query("SELECT metric, value FROM system.metrics WHERE metric IN "
                            "('MemoryTracking', 'MergesMutationsMemoryTracking')").rows)
    tracked, merges = (float(rows.get(k, 0)) / 2**20 for k in ("MemoryTracking", "MergesMutationsMemoryTracking"))
    try:
        text = str(store.query("SELECT * FROM system.jemalloc_stats").rows[0][0])
    except Exception:  # noqa: BLE001 - a chdb without the table: resident unknown
        return tracked, merges, 0.0
    found = re.search(r"resident: (\d+)", text)
    return tracked, merges, (int(found.group(1)) / 2**20 if found else 0.0)


class _Diagnosis:
    """tracemalloc and gc object counts, diffed against the first look."""

    def __init__(self) -> None:
        tracemalloc.start(10)
        self.first: tracemalloc.Snapshot | None = None
        self.first_types: Counter = Counter()

    def look(self, at_s: float) -> None:
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        types = Counter(type(o).__name__ for o in gc.get_objects())
        used, free = malloc_mib()
        traced = tracemalloc.get_traced_memory()[0] / 2**20
        print(f"# trace {at_s:.0f} s: RSS {current_rss_bytes() / 2**20:.0f} MiB, traced {traced:.0f} MiB, "
              f"malloc in use {used:.0f} MiB, held free {free:.0f} MiB", flush=True)
        if self.first is None:
            self.first, self.first_types = snapshot, types
            return
        for stat in snapshot.compare_to(self.first, "traceback")[:8]:
            frames = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(stat.traceback[-6:]))
            print(f"#   {stat.size_diff / 2**20:+.1f} MiB {stat.count_diff:+d} blocks: {frames}", flush=True)
        grown = sorted(((types[k] - self.first_types[k], k) for k in types), reverse=True)[:8]
        print("#   objects: " + ", ".join(f"{k} {d:+d}" for d, k in grown), flush=True)


def worker_overrides(text: str) -> dict:
    """``name=value,...`` -> WorkerSettings keyword arguments (ints, floats, 0/1 for booleans).

    >>> worker_overrides("trim_after_group=0, group_max_bytes=1048576, return_min_interval_s=2.5")
    {'trim_after_group': False, 'group_max_bytes': 1048576, 'return_min_interval_s': 2.5}
    """
    from dataclasses import fields

    from finsa.streams.faust_app import WorkerSettings

    kinds = {f.name: f.type for f in fields(WorkerSettings)}
    out: dict = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, _, value = item.partition("=")
        kind = kinds.get(name.strip())
        if kind not in ("bool", "int", "float"):
            raise SystemExit(f"FINSA_SOAK_WORKER: {name!r} is not a numeric or boolean worker setting")
        out[name.strip()] = {"bool": lambda v: v.strip() not in ("0", "false", ""), "int": int, "float": float}[
            str(kind)](value)
    return out


def _returned_s() -> dict[str, float]:
    from finsa.streams.memory_return import RETURN_SECONDS

    return {labels.get("allocator", ""): round(value, 2) for labels, value in RETURN_SECONDS.samples()}


def measure(rate: float, seconds: float, batch_rows: int = 5000, sample_s: float = 5.0) -> dict:
    """Offer ``rate`` flows/s for ``seconds`` from another process; sample this worker's memory."""
    from finsa.app.run import topic_partitions
    from finsa.detectors.engine import DetectionEngine
    from finsa.kafka import ensure_topics
    from finsa.storage.backend import open_store
    from finsa.streams.broker import EmbeddedBroker
    from finsa.streams.faust_app import WorkerSettings
    from finsa.streams.processor import FlowProcessor
    from finsa.streams.service import StreamService

    latency = _Latency()
    trace_s = float(os.environ.get("FINSA_SOAK_TRACE_S", "60"))
    diagnosis = _Diagnosis() if os.environ.get("FINSA_SOAK_TRACE") else None
    samples: list[tuple[float, int, int, int, float]] = []  # (s, worker RSS, lag, broker RSS, malloc MiB)
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        ensure_topics(broker.bootstrap, topic_partitions(4))
        store = open_store(data_dir=Path(tmp) / "store")
        store.migrate()
        processor = FlowProcessor(store, DetectionEngine(), flow_observers=[latency.observe])
        overrides = worker_overrides(os.environ.get("FINSA_SOAK_WORKER", ""))
        settings = WorkerSettings(broker.bootstrap, app_id="bench", datadir=Path(tmp) / "faust", session_timeout_s=4,
                                  **overrides)
        print(f"# worker settings: {overrides or 'defaults'}; load average {os.getloadavg()}", flush=True)
        service = StreamService(settings, processor)
        broker_pid = broker._proc.pid if broker._proc is not None else 0  # the bench reads its RSS
        context = multiprocessing.get_context("spawn")
        sent = context.Value("q", 0)
        sender = context.Process(target=_produce, args=(broker.bootstrap, rate, seconds, batch_rows, sent))

        async def main() -> None:
            await service.start()
            await asyncio.sleep(4)  # consumer-group join
            wall0 = time.monotonic()
            sender.start()
            next_sample, next_trace = wall0, wall0 + trace_s
            while sender.is_alive():
                now = time.monotonic()
                if now >= next_sample:
                    next_sample += sample_s
                    samples.append((now - wall0, current_rss_bytes(), sent.value - latency.stored,
                                    current_rss_bytes(broker_pid), malloc_mib()[0]))
                    if len(samples) % int(60 / sample_s) == 1:  # live, one line a minute
                        at, rss, lag, broker_rss, heap = samples[-1]
                        tracked, merges, resident = await asyncio.get_running_loop().run_in_executor(
                            None, _chdb_mib, store)
                        print(f"# {at:4.0f} s: worker RSS {rss / 2**20:.0f} MiB (glibc malloc {heap:.0f}, ClickHouse "
                              f"{tracked:.0f} tracked, {merges:.0f} in merges, {resident:.0f} jemalloc resident), "
                              f"lag {lag:,} flows, "
                              f"stored {latency.stored:,}, broker RSS "
                              f"{broker_rss / 2**20:.0f} MiB, load {os.getloadavg()[0]:.1f}, returned "
                              f"{_returned_s()}", flush=True)
                if diagnosis is not None and now >= next_trace:
                    next_trace += trace_s
                    diagnosis.look(now - wall0)
                await asyncio.sleep(0.2)
            sender.join()
            result.update(load_end=os.getloadavg(), stored_at_end=latency.stored, send_s=time.monotonic() - wall0)
            deadline = time.monotonic() + 60
            while latency.stored < sent.value and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            result.update(wall_s=time.monotonic() - wall0)
            await service.stop(wait_for_streams=latency.stored >= sent.value)  # a backlog is not waited for

        asyncio.run(main())
        store.close()
    result.update(sent=int(sent.value), stored=latency.stored, returned_s=_returned_s(), p50_ms=latency.percentile_ms(50),
                  p99_ms=latency.percentile_ms(99), samples=samples)
    return result


def run(quick: bool, seconds: float | None = None, rate: float | None = None) -> list[str]:
    """Load at 2x the embedded design rate (10,000 flows/s) for ``seconds``: memory, lag, loss."""
    rate = rate or 20_000
    seconds = seconds or (60 if quick else 600)
    r = measure(rate, seconds)
    s = r["samples"] or [(0.0, 0, 0, 0, 0.0)]
    rss = [x[1] / 2**20 for x in s]
    half = max(len(rss) // 2, 1)
    first, second = max(rss[:half]), max(rss[half:] or rss)
    rows = [[f"{rate:,.0f}", f"{seconds:.0f}", f"{r['sent']:,}", f"{r['stored']:,}", f"{r['sent'] - r['stored']:,}",
             f"{max(x[2] for x in s):,}", f"{rss[0]:,.0f}", f"{first:,.0f}", f"{second:,.0f}",
             f"{(second / first - 1) * 100:+.1f}%", f"{r['p99_ms']:,.0f}", f"{max(x[3] for x in s) / 2**20:,.0f}"]]
    minute = max(int(60 / 5), 1)
    series = " ".join(f"{max(rss[i:i + minute]):.0f}" for i in range(0, len(rss), minute))
    heap = " ".join(f"{max(x[4] for x in s[i:i + minute]):.0f}" for i in range(0, len(s), minute))
    lag = " ".join(f"{max(x[2] for x in s[i:i + minute]) // 1000}k" for i in range(0, len(s), minute))
    peaks = [max(rss[i:i + minute]) for i in range(0, len(rss), minute)]
    growth = halves_growth(peaks)
    extra = (f"\ngrowth between the halves of the per-minute peaks: peaks {growth['peak']:+.1f}%, median "
             f"{growth['median']:+.1f}%, mean {growth['mean']:+.1f}%\nstored {r['stored_at_end'] / r['send_s']:,.0f} "
             f"flows/s while offered; memory returned after store writes, wall s: {r['returned_s']}; load average "
             f"at the end {r['load_end']}")
    return ["## soak: stream worker under steady load (Tansu -> Faust -> detectors -> chdb; producer in "
            "its own process)\n" + grid(
                ["offered flows/s", "seconds", "sent", "stored", "lost", "max lag (flows)", "RSS start MiB",
                 "RSS max 1st half MiB", "RSS max 2nd half MiB", "growth", "latency p99 ms", "broker RSS max MiB"],
                rows) + f"\n\nper minute (max): worker RSS MiB {series}\nmalloc in use MiB {heap}\nlag flows {lag}" + extra]


def halves_growth(peaks: list[float]) -> dict[str, float]:
    """Growth of the second half over the first, in %, by the peak, median and mean of ``peaks``.

    >>> {k: round(v, 1) for k, v in halves_growth([100, 120, 110, 130]).items()}
    {'peak': 8.3, 'median': 9.1, 'mean': 9.1}
    """
    half = max(len(peaks) // 2, 1)
    first, second = peaks[:half], peaks[half:] or peaks
    return {"peak": (max(second) / max(first) - 1) * 100,
            "median": (float(np.median(second)) / float(np.median(first)) - 1) * 100,
            "mean": (float(np.mean(second)) / float(np.mean(first)) - 1) * 100}
