"""Stand-ins shared by tests that exercise the stream layer without a real store or detectors."""

from __future__ import annotations

from finsa import wire


class MemoryStore:
    """Keeps every batch it is given (a :class:`finsa.storage.backend.BatchStore`); every batch is new."""

    def __init__(self) -> None:
        self.batches: list[wire.RecordBatch] = []

    def insert(self, batch: wire.RecordBatch) -> bool:
        self.batches.append(batch)
        return True

    def insert_many(self, batches: list[wire.RecordBatch]) -> int:
        self.batches.extend(batches)
        return len(batches)


class NoDetect:
    """A detection engine that never alerts."""

    def process(self, flows: wire.RecordBatch) -> wire.RecordBatch:
        return wire.ALERT.make_batch({}, n_rows=0)
