"""Flows held back for one larger store write: a write's cost per flow falls with its size.

A store write has a fixed cost whatever its rows: a part per table, roll-up view and projection,
and each view's SELECT planned. On chdb with every roll-up, 1M flows cost 7.6 CPU s as 50,000-row
writes and 3.3 s as 200,000-row writes (``bench/write_cost.py`` has more sizes). A worker still
detects each group as it comes (every ~2 s) and writes its alerts at once, so alerts stay
prompt; the groups' flows wait here until ``max_rows`` are held or the oldest has waited
``max_age_s``, and are then written as one block. The groups are acknowledged only after that
write (at-least-once: a worker that dies meanwhile gets them again).

>>> from finsa import wire
>>> held = HeldFlows(max_rows=10, max_age_s=5.0)
>>> four, six = wire.FLOW.make_batch({"dst_port": [22] * 4}), wire.FLOW.make_batch({"dst_port": [80] * 6})
>>> held.add([four], four, now_s=100.0)
>>> held.due(now_s=101.0), held.due(now_s=105.0), held.rows
(False, True, 4)
>>> held.add([six], six, now_s=101.0)
>>> held.due(now_s=101.0)
True
>>> batches, joined = held.take()
>>> len(batches), len(joined), held.rows, held.due(now_s=200.0), bool(held)
(2, 2, 0, False, False)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from finsa import wire

__all__ = ["HeldFlows"]


@dataclass
class HeldFlows:
    """Flow batches whose group is detected (and its alerts stored), waiting to be written."""

    max_rows: int = 200_000
    max_age_s: float = 5.0
    batches: list[wire.RecordBatch] = field(default_factory=list)  # as received, each under its own id
    joined: list[wire.RecordBatch] = field(default_factory=list)  # one per group, for the flow observers
    rows: int = 0
    since_s: float | None = None  # when the oldest held group was added (monotonic)

    def __bool__(self) -> bool:
        return bool(self.batches)

    def add(self, batches: list[wire.RecordBatch], joined: wire.RecordBatch, now_s: float | None = None) -> None:
        """Hold one group's flow batches (``joined``: the same rows as one batch)."""
        if self.since_s is None:
            self.since_s = time.monotonic() if now_s is None else now_s
        self.batches += batches
        self.joined.append(joined)
        self.rows += len(joined)

    def due(self, now_s: float | None = None) -> bool:
        """Enough rows held, or the oldest held long enough."""
        if self.since_s is None:
            return False
        now_s = time.monotonic() if now_s is None else now_s
        return self.rows >= self.max_rows or now_s - self.since_s >= self.max_age_s

    def take(self) -> tuple[list[wire.RecordBatch], list[wire.RecordBatch]]:
        """Everything held (batches, joined per group), emptied."""
        batches, joined = self.batches, self.joined
        self.batches, self.joined, self.rows, self.since_s = [], [], 0, None
        return batches, joined
