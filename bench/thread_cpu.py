"""CPU seconds of every thread of this process, those that ended during the run included.

``/proc/self/task`` lists only the threads alive now: the chdb engine starts and ends insert
threads all the time, and their CPU is then in the process's total but in no thread's. A
:class:`ThreadCpu` samples every thread every ``interval_s`` from a daemon thread and keeps each
thread's last reading, so a thread that ended is counted up to its last sample (what it used
after that, at most ``interval_s``, is in ``unseen``). Python threads are named by their
``threading`` class and name (``MainThread``, ``finsa-detect``, ``WorkerThread``: mode's thread
that runs Faust's aiokafka consumer), other threads by their kernel name (chdb's ``ThreadPool``,
``MergeMutate`` ...).

:class:`GcSeconds` is a ``gc.callbacks`` hook that sums the thread CPU of cyclic collections.

>>> cpu = ThreadCpu(interval_s=0.05).start()
>>> _ = sum(range(200_000))
>>> shares = cpu.stop()
>>> "MainThread" in shares and shares["MainThread"] >= 0
True
"""

from __future__ import annotations

import gc
import os
import re
import threading
import time

_TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu_s() -> float:
    with open("/proc/self/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _tasks() -> dict[int, tuple[str, float]]:
    out = {}
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[int(task)] = (stat[stat.index("(") + 1:stat.rindex(")")], (int(fields[11]) + int(fields[12])) / _TICKS)
    return out


def _python_names() -> dict[int, str]:
    """Native thread id -> ``Class:name`` without numbers (``ThreadPoolExecutor`` threads by prefix)."""
    names = {}
    for t in threading.enumerate():
        if t.native_id is not None:
            kind = type(t).__name__
            name = re.sub(r"[-_]?\d+(?=\W|$)", "", t.name)
            names[t.native_id] = name if kind == "Thread" or kind == "_MainThread" else f"{kind}:{name}"
    return names


class ThreadCpu:
    """Per-thread CPU seconds between :meth:`start` and :meth:`stop`, grouped by thread name."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._name: dict[int, str] = {}
        self._python: set[int] = set()  # tids of Python threads (the others are the engine's)
        with open("/proc/self/comm") as fh:
            self._comm = fh.read().strip()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process0 = 0.0
        #: after :meth:`stop`: CPU seconds of the threads that are not Python's (chdb's), ended ones included
        self.engine_s = 0.0

    def start(self) -> "ThreadCpu":
        self._process0 = _process_cpu_s()
        self._sample(first=True)
        self._thread = threading.Thread(target=self._run, name="bench-thread-cpu", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self, first: bool = False) -> None:
        python = _python_names()
        for tid, (kernel_name, cpu) in _tasks().items():
            if tid not in self._first:
                self._first[tid] = cpu if first else 0.0  # a thread born since: all its CPU is in the run
            self._last[tid] = cpu
            self._name.setdefault(tid, python.get(tid, kernel_name))
            if tid in python or kernel_name == self._comm:  # named once Python knows it
                self._python.add(tid)
                self._name[tid] = python.get(tid, self._name[tid])

    def stop(self) -> dict[str, float]:
        """CPU seconds by thread name; ``unseen`` is the process's CPU no sample saw."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        process = _process_cpu_s() - self._process0
        shares: dict[str, float] = {}
        for tid, cpu in self._last.items():
            name = self._name[tid]
            shares[name] = shares.get(name, 0.0) + cpu - self._first[tid]
        shares["unseen"] = max(process - sum(shares.values()), 0.0)
        self.engine_s = sum(cpu - self._first[tid] for tid, cpu in self._last.items() if tid not in self._python)
        return shares


class GcSeconds:
    """Thread CPU seconds spent in the cyclic garbage collector, by generation (a gc callback)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._started = threading.local()

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started.t = time.thread_time()
        elif hasattr(self._started, "t"):
            generation = info.get("generation", 2)
            self.seconds[generation] += time.thread_time() - self._started.t
            self.collections[generation] += 1

    def __enter__(self) -> "GcSeconds":
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)
