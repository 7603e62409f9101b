"""Truthful progress: kinds compared with themselves, and a consumer that stopped is a stall at once."""

from __future__ import annotations

from finsa import wire
from finsa.streams.processor import FlowProcessor
from finsa.streams.progress import STALLED, Progress
from tests.fakes import MemoryStore, NoDetect


def test_a_stopped_consumer_is_reported_as_a_stall_at_once() -> None:
    """What ``finsa run`` printed in the issue (sent grows, processed frozen) is now a stall."""
    from finsa.streams.progress import Progress

    clock = [0.0]
    progress = Progress(stall_after_s=5, clock=lambda: clock[0])
    progress.offer("flow", 71)
    progress.done("flow", 71, stored=71)
    for second in range(1, 7):
        clock[0] = float(second)
        progress.offer("flow", 10)
        began = progress.check()
        assert began == (second == 6) and progress.stalled == (second >= 6)
    assert STALLED.value() == 1 and "STALLED: 60 flow" in progress.stall_message()
    progress.done("flow", 60, stored=60)
    assert not progress.check() and STALLED.value() == 0


def test_flows_and_arp_are_counted_apart_so_a_caught_up_worker_reads_caught_up() -> None:
    """The issue's "sent 511, processed 349": flow batches were compared with flow and ARP messages."""
    class IdempotentStore(MemoryStore):
        def insert(self, batch: wire.RecordBatch) -> bool:
            new = all(b.batch_id != batch.batch_id for b in self.batches)
            return super().insert(batch) and new

        def insert_many(self, batches: list[wire.RecordBatch]) -> int:
            return sum(self.insert(b) for b in batches)

    progress = Progress()
    processor = FlowProcessor(IdempotentStore(), NoDetect())
    processor.progress = progress
    flows = wire.encode_batch(wire.FLOW.make_batch({"dst_port": [22, 80]}))
    arp = wire.encode_batch(wire.ARP.make_batch({"ip": ["10.0.0.1"]}))
    for payload, kind in ((flows, "flow"), (arp, "arp"), (b"junk", "other")):
        progress.offer(kind)
        processor.process_group([payload])
    assert progress.caught_up() and progress.lag_s() == 0.0
    assert progress.processed == {"flow": 1, "arp": 1, "other": 1}
    assert progress.stored == {"flow": 1, "arp": 1, "other": 0}
    processor.process_group([flows])  # a redelivery: processed again, not stored again
    assert progress.stored["flow"] == 1 and progress.processed["flow"] == 2
