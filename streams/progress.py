"""What a stream worker did, per kind of message: offered, processed, stored, and how far behind.

*Offered*: messages that reached the worker's intake (``finsa run``: acknowledged by the broker
to its own collector; ``finsa worker``: handed to the flow agent by the consumer). *Processed*:
decoded and through detection. *Stored*: written by storage (a redelivered batch storage already
had counts as processed, not stored). Kinds are compared with themselves only (flow with flow,
ARP with ARP), so a worker that is caught up reads as caught up.

``lag_s`` is the age of the oldest message offered and not yet processed (0 when processed ==
offered for every kind; messages of a kind are taken to be processed in the order they were
offered). A worker is *stalled* when it is behind and processed nothing for ``stall_after_s``: that is
reported at once (:meth:`Progress.check` returns True on the transition; metric
``finsa_worker_stalled`` is 1 while it lasts, ``finsa_worker_stalls_total`` counts them).

>>> clock = [0.0]
>>> p = Progress(stall_after_s=10, clock=lambda: clock[0])
>>> p.offer("flow", 3); p.offer("arp")
>>> p.done("flow", 3, stored=3); clock[0] = 4.0
>>> p.behind(), p.lag_s(), p.check()
(True, 4.0, False)
>>> clock[0] = 12.0; p.check(), p.stalled
(True, True)
>>> p.done("arp", 1, stored=1); p.check(), p.stalled, p.lag_s()
(False, False, 0.0)
>>> p.line()
'flow 3 offered/3 processed/3 stored, arp 1/1/1; lag 0.0 s'
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

from finsa import wire
from finsa.metrics import REGISTRY

__all__ = ["Progress", "KINDS", "message_kind"]

KINDS = ("flow", "arp")
MESSAGES = REGISTRY.counter("finsa_worker_messages_total", "Flow-topic messages by kind and stage "
                                                           "(offered, processed, stored)", ["kind", "stage"])
LAG = REGISTRY.gauge("finsa_worker_lag_seconds", "How long the worker has been behind what was offered")
STALLED = REGISTRY.gauge("finsa_worker_stalled", "1 while data arrives and nothing is processed")
STALLS = REGISTRY.counter("finsa_worker_stalls_total", "Times the worker stalled (data arrived, nothing processed)")


_KIND_OF_CODE = {wire.FLOW.code: "flow", wire.ARP.code: "arp"}


def message_kind(payload: bytes | bytearray | memoryview | None) -> str:
    """The kind of a flow-topic message read from its wire header alone (``other`` when it is not
    a flow or ARP batch, e.g. garbage that will be dead-lettered).

    >>> message_kind(wire.encode_batch(wire.ARP.make_batch({}))), message_kind(b"junk")
    ('arp', 'other')
    """
    if payload is None or len(payload) < wire.HEADER_BYTES or bytes(payload[:4]) != wire.MAGIC:
        return "other"
    return _KIND_OF_CODE.get(payload[6], "other")


class Progress:
    """Per-kind offered/processed/stored counts, lag and stall detection (thread-safe)."""

    def __init__(self, stall_after_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        if stall_after_s <= 0:
            raise ValueError("stall_after_s must be > 0")
        self.stall_after_s, self.clock = stall_after_s, clock
        self.offered = {k: 0 for k in KINDS}
        self.processed = {k: 0 for k in KINDS}
        self.stored = {k: 0 for k in KINDS}
        self.stalled = False
        self._lock = threading.Lock()
        self._waiting: dict[str, deque[tuple[int, float]]] = {}  # kind -> (offered count so far, when)
        self._last_done = clock()

    def offer(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self.offered[kind] = self.offered.get(kind, 0) + n
            self._waiting.setdefault(kind, deque()).append((self.offered[kind], self.clock()))
        MESSAGES.inc(n, kind=kind, stage="offered")

    def done(self, kind: str, n: int, stored: int) -> None:
        """``n`` messages of ``kind`` processed, ``stored`` of them new to storage."""
        with self._lock:
            self.processed[kind] = self.processed.get(kind, 0) + n
            self.stored[kind] = self.stored.get(kind, 0) + stored
            self._last_done = self.clock()
            waiting = self._waiting.get(kind)
            while waiting and waiting[0][0] <= self.processed[kind]:
                waiting.popleft()
        MESSAGES.inc(n, kind=kind, stage="processed")
        MESSAGES.inc(stored, kind=kind, stage="stored")

    def _oldest_waiting(self) -> float | None:
        """When the oldest message still waiting was offered (None: nothing waits)."""
        heads = [q[0][1] for q in self._waiting.values() if q]
        return min(heads) if heads else None

    def _behind(self) -> bool:
        return any(self.processed.get(k, 0) < n for k, n in self.offered.items())

    def behind(self) -> bool:
        with self._lock:
            return self._behind()

    def caught_up(self) -> bool:
        """Every offered message of every kind was processed."""
        return not self.behind()

    def lag_s(self) -> float:
        with self._lock:
            oldest = self._oldest_waiting()
            return 0.0 if oldest is None else max(self.clock() - oldest, 0.0)

    def check(self) -> bool:
        """Update the stall state and metrics; True exactly when a stall has just begun."""
        with self._lock:
            now, oldest = self.clock(), self._oldest_waiting()
            stalled = oldest is not None and now - max(oldest, self._last_done) >= self.stall_after_s
            began, self.stalled = stalled and not self.stalled, stalled
        LAG.set(self.lag_s())
        STALLED.set(1 if stalled else 0)
        if began:
            STALLS.inc()
        return began

    def line(self) -> str:
        """``flow 3 offered/3 processed/3 stored, arp 1/1/1; lag 0.0 s``."""
        with self._lock:
            kinds = [k for k in self.offered if self.offered[k] or self.processed.get(k)] or ["flow"]
            parts = [f"{k} {self.offered[k]}/{self.processed.get(k, 0)}/{self.stored.get(k, 0)}" for k in kinds]
        first, *rest = parts
        name, counts = first.split(" ")
        offered, processed, stored = counts.split("/")
        head = f"{name} {offered} offered/{processed} processed/{stored} stored"
        return ", ".join([head, *rest]) + f"; lag {self.lag_s():.1f} s"

    def stall_message(self) -> str:
        with self._lock:
            waiting = {k: self.offered[k] - self.processed.get(k, 0) for k in self.offered
                       if self.offered[k] > self.processed.get(k, 0)}
        what = ", ".join(f"{n} {k}" for k, n in waiting.items())
        return f"STALLED: {what} message(s) waiting, nothing processed for {self.stall_after_s:g} s or more"
