"""Clocks for the benchmarks, and running one measurement in a fresh process.

:class:`Clock` reads CPU time (``time.process_time``, all threads of this process, plus the
CPU time of children that have been waited for, from ``resource.getrusage(RUSAGE_CHILDREN)``)
and wall time together. CPU time is the fair basis on a shared, noisy machine for
single-threaded code and for tools that meter in a child process (nfstream); wall time is what
a latency is.

:func:`isolated` runs ``bench.worker`` in a new interpreter so a tool's peak memory (ru_maxrss)
and imports do not leak into the others; the worker prints one JSON object.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["Clock", "isolated", "peak_rss_bytes", "current_rss_bytes", "children_cpu_s"]

ROOT = Path(__file__).resolve().parent.parent


def children_cpu_s() -> float:
    """User + system CPU seconds of the children this process has waited for."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def current_rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of this process (or of ``pid``) now (Linux ``VmRSS``), 0 where unknown."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss_bytes(children: bool = False) -> int:
    """Peak resident set size of this process (or of its largest waited-for child), in bytes.

    For this process Linux's ``VmHWM`` is read first: ``getrusage``'s ru_maxrss survives
    ``execve``, so a worker started from a big parent would report the parent's size.
    """
    if not children:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss * 1024  # Linux reports KiB


class Clock:
    """CPU and wall seconds elapsed since it was created (or :meth:`reset`)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._cpu0 = time.process_time() + children_cpu_s()
        self._wall0 = time.perf_counter()

    @property
    def cpu_s(self) -> float:
        return time.process_time() + children_cpu_s() - self._cpu0

    @property
    def wall_s(self) -> float:
        return time.perf_counter() - self._wall0


def isolated(task: str, timeout_s: float = 3600, **kwargs: Any) -> dict[str, Any]:
    """Run ``bench.worker`` task ``task`` with keyword arguments in a new process; its JSON result."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-m", "bench.worker", task, json.dumps(kwargs)],
                          capture_output=True, text=True, timeout=timeout_s, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"bench worker {task} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
