"""Memory a stored group freed, handed back to the system right after its store write.

A worker's RSS peaks where a group's decoded flows, its detection and its store write are freed
but not yet returned: glibc keeps freed pages in its arenas until ``malloc_trim``
(:mod:`finsa.allocator`), and chdb's jemalloc keeps the dirty pages of an insert or a merge until
its decay returns them (:meth:`~finsa.storage.chdb_backend.ChdbStore.release_memory`). Returned
after every group (in the store thread, between two writes) rather than on a timer, the memory
held between groups follows what is in use, whatever the phase of the timer; the soak's
peak-to-peak growth between the halves of an hour came from samples taken while both were held.

Each return is timed (``finsa_worker_memory_return_seconds_total``, by allocator) so its CPU cost
is visible next to the flows stored; ``min_interval_s`` bounds how often it runs (a worker storing
many small groups returns memory at most that often).

>>> calls = []
>>> back = MemoryReturn(trim_glibc=False, release_store=lambda: calls.append(1), min_interval_s=60.0)
>>> back.after_group(), back.after_group(), len(calls)
(True, False, 1)
"""

from __future__ import annotations

import time
from typing import Callable

from finsa import allocator
from finsa.metrics import REGISTRY

RETURN_SECONDS = REGISTRY.counter("finsa_worker_memory_return_seconds_total",
                                  "Wall seconds spent handing freed memory back after store writes", ["allocator"])
RETURNS = REGISTRY.counter("finsa_worker_memory_returns_total", "Memory hand-backs after store writes", ["allocator"])
RETURN_ERRORS = REGISTRY.counter("finsa_worker_memory_return_errors_total",
                                 "Memory hand-backs that failed (the group stays stored)", ["allocator"])


class MemoryReturn:
    """Return glibc's free pages and the store engine's dirty pages after a group is stored.

    ``release_store`` is the store's :meth:`~finsa.storage.backend.Store.release_memory` (None:
    the store's engine is not in this process); ``trim_glibc`` runs ``malloc_trim(0)`` (it walks
    the heap: ~20-40 ms on a fragmented heap of a few hundred MiB on this machine). At most once
    per ``min_interval_s`` (0: after every group).
    """

    def __init__(self, trim_glibc: bool, release_store: Callable[[], object] | None, min_interval_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if min_interval_s < 0:
            raise ValueError(f"min_interval_s: must be >= 0, got {min_interval_s}")
        self.trim_glibc, self.release_store = trim_glibc, release_store
        self.min_interval_s, self.clock = min_interval_s, clock
        self._last: float | None = None

    @property
    def active(self) -> bool:
        """True when there is something to return (else :meth:`after_group` does nothing)."""
        return self.trim_glibc or self.release_store is not None

    def after_group(self) -> bool:
        """Called after a group's store write; True when memory was handed back this time."""
        now = self.clock()
        if not self.active or (self._last is not None and now - self._last < self.min_interval_s):
            return False
        self._last = now
        if self.release_store is not None:
            self._timed("jemalloc", self.release_store)
        if self.trim_glibc:
            self._timed("glibc", allocator.trim)
        return True

    @staticmethod
    def _timed(name: str, fn: Callable[[], object]) -> None:
        started = time.perf_counter()
        try:
            fn()
        except Exception:  # noqa: BLE001 - a failed hand-back (store closing) must not fail the stored group
            RETURN_ERRORS.inc(allocator=name)
        RETURN_SECONDS.inc(time.perf_counter() - started, allocator=name)
        RETURNS.inc(allocator=name)
