"""Stand-ins shared by tests that exercise the stream layer without a real store or detectors."""

from __future__ import annotations

from finsa import wire


class MemoryStore:
    """Keeps every batch it is given; ``insert`` always reports a new batch."""

    def __init__(self) -> None:
        self.batches: list[wire.RecordBatch] = []

    def insert(self, batch: wire.RecordBatch) -> bool:
        self.batches.append(batch)
        return True


class NoDetect:
    """A detection engine that never alerts."""

    def process(self, flows: wire.RecordBatch) -> wire.RecordBatch:
        return wire.ALERT.make_batch({}, n_rows=0)
