"""CPU seconds per stage of a stream worker, and the CPU of whole processes, for ``bench pipeline``.

The worker's public pieces are wrapped, not changed: :class:`TimedEngine` (detection),
:class:`TimedStore` (chdb writes; alert batches also give the flow -> alert latency),
:class:`TimedSectorStage` (the sector picture) and :class:`TimedProcessor` (the whole group:
what is left after detection, storage and the sector picture is wire decoding and signature
checks). Detection, decoding and the sector picture are timed with ``time.thread_time`` of the
thread that runs them; the store as the calling thread's time in its writes plus the CPU of
the chdb engine's own threads (:func:`engine_threads_cpu_s`: insert pipelines, background
merges), which run beside the Python threads. :func:`process_cpu_s` reads any process's CPU
from ``/proc/<pid>/stat``.

>>> cpu = Stages()
>>> with cpu.timed("detect"):
...     _ = sum(range(1000))
>>> list(cpu.seconds)
['detect']
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from finsa import wire
from finsa.streams.processor import FlowProcessor
from finsa.streams.sector_stage import SectorStage

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int | str = "self") -> float:
    """User + system CPU seconds of process ``pid``'s own threads, 0 if gone.

    Its waited-for children are left out: ``bench pipeline``'s worker process starts and reaps
    the agent, whose CPU the agent reports itself (counting it here too counted it twice).
    """
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:13]) / _TICKS  # utime stime


def engine_threads_cpu_s() -> float:
    """CPU seconds of this process's threads that are not Python's: the chdb engine's own
    (insert pipelines, merges, background pools name themselves; a Python thread keeps the
    process's name)."""
    with open("/proc/self/comm") as fh:
        python = fh.read().strip()
    total = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        if stat[stat.index("(") + 1:stat.rindex(")")] != python:
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def child_pids(parent: int | None = None) -> list[int]:
    """Processes whose parent is ``parent`` (default: this one)."""
    parent = parent or os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == parent:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


class Stages:
    """CPU seconds by stage name, from several threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def count(self, name: str, n: int = 1) -> None:
        """Count an event (store writes by record type), kept apart from the CPU seconds."""
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @contextmanager
    def timed(self, name: str, clock=time.thread_time) -> Iterator[None]:
        t0 = clock()
        try:
            yield
        finally:
            self.add(name, clock() - t0)


class TimedEngine:
    """A detection engine whose ``process`` is timed as ``detect``; everything else passes through."""

    def __init__(self, engine, stages: Stages) -> None:
        self._engine, self._stages = engine, stages

    def process(self, batch: wire.RecordBatch) -> wire.RecordBatch:
        with self._stages.timed("detect"):
            return self._engine.process(batch)

    def __getattr__(self, name: str):
        return getattr(self._engine, name)


class TimedStore:
    """A store whose writes are timed as ``stage``; alert batches give flow -> alert latencies."""

    def __init__(self, store, stages: Stages, stage: str, alert_latency_ms: list | None = None) -> None:
        self._store, self._stages, self._stage = store, stages, stage
        self._alert_latency_ms = alert_latency_ms

    def _note(self, batches: list[wire.RecordBatch]) -> None:
        if self._alert_latency_ms is None:
            return
        now_ms = int(time.time() * 1000)
        for batch in batches:
            if batch.type is wire.ALERT and len(batch):
                self._alert_latency_ms.append(now_ms - np.asarray(batch.columns["time_ms"]))

    def insert_many(self, batches: list[wire.RecordBatch]) -> int:
        t_thread = time.thread_time()
        if batches:
            self._stages.count(f"{batches[0].type.name.lower()} writes")
        try:
            return self._store.insert_many(batches)
        finally:
            self._stages.add(self._stage, time.thread_time() - t_thread)
            self._note(batches)

    def insert(self, batch: wire.RecordBatch) -> bool:
        return bool(self.insert_many([batch]))

    def __getattr__(self, name: str):
        return getattr(self._store, name)


class TimedSectorStage(SectorStage):
    """The sector stage, its picture's work timed as ``sector``."""

    stages: Stages

    def observe_flows(self, flows: wire.RecordBatch) -> None:
        with self.stages.timed("_sector_flows"):
            super().observe_flows(flows)

    def observe_alerts(self, payload: bytes, headers=None) -> str | None:
        with self.stages.timed("sector"):
            return super().observe_alerts(payload, headers)

    def tick(self, now_ms: int | None = None) -> dict[str, wire.RecordBatch]:
        with self.stages.timed("sector"):
            return super().tick(now_ms)

    def checkpoint(self) -> str:
        with self.stages.timed("sector"):
            return super().checkpoint()


class TimedProcessor(FlowProcessor):  # process_group: a worker of before the prepare/store split
    """The flow processor, a group's preparation and its storage timed as ``_group`` (the threads that run them)."""

    stages: Stages

    def process_group(self, payloads, headers=None):
        if hasattr(FlowProcessor, "prepare_group"):
            return super().process_group(payloads, headers)
        with self.stages.timed("_group"):
            return super().process_group(payloads, headers)

    def prepare_group(self, payloads, headers=None):
        with self.stages.timed("_group"):
            return super().prepare_group(payloads, headers)

    def store_group(self, prepared):
        with self.stages.timed("_group"):
            return super().store_group(prepared)


def worker_shares(stages: Stages, worker_cpu_s: float, engine_cpu_s: float) -> dict[str, float]:
    """CPU seconds of the worker process by stage: decode+verify is the group's remainder, the
    store its calling threads' time in writes plus the chdb engine's threads (``engine_cpu_s``),
    the Faust/Kafka layer what is left of the process."""
    s = stages.seconds
    stored = s.get("store", 0.0) + s.get("sector store", 0.0)
    decode = max(s.get("_group", 0.0) - s.get("detect", 0.0) - s.get("store", 0.0) - s.get("_sector_flows", 0.0), 0.0)
    named = {"worker: decode+verify": decode, "worker: detect": s.get("detect", 0.0),
             "worker: sector": s.get("sector", 0.0) + s.get("_sector_flows", 0.0) - s.get("sector store", 0.0),
             "worker: store (chdb)": stored + engine_cpu_s}
    named["worker: Faust/Kafka+rest"] = max(worker_cpu_s - sum(named.values()), 0.0)
    return named
