"""The one stream-worker builder: a stall is reported at once (line, metric, sector emergency) and
its end too; the plan is inert until start()."""

from __future__ import annotations

from finsa import wire
from finsa.app.stream_worker import StreamWorker, WorkerPlan
from finsa.streams.faust_app import WorkerSettings
from finsa.streams.progress import STALLED, Progress
from tests.fakes import MemoryStore


def test_a_stall_and_its_end_are_said_and_become_a_sector_emergency() -> None:
    said: list[str] = []
    worker = StreamWorker(WorkerPlan(WorkerSettings("127.0.0.1:9", app_id="w1"), say=said.append))
    clock = [0.0]
    worker.progress = Progress(stall_after_s=10, clock=lambda: clock[0])
    worker.store, worker.sector = MemoryStore(), object()  # a sector picture is there
    worker.progress.offer("flow", 5)
    clock[0] = 9.0
    worker.check_stall()
    assert said == [] and worker.store.batches == []
    clock[0] = 10.0
    worker.check_stall()
    worker.check_stall()  # still stalled: said once
    assert len(said) == 1 and "STALLED: 5 flow" in said[0] and STALLED.value() == 1
    worker.progress.done("flow", 5, stored=5)
    worker.check_stall()
    assert "processing again" in said[1] and STALLED.value() == 0
    rows = [b for b in worker.store.batches if b.type is wire.EMERGENCY]
    assert [int(b.columns["active"][0]) for b in rows] == [1, 0]
    assert {str(b.columns["kind"][0]) for b in rows} == {"worker_stalled"}
    assert {str(b.columns["sensor_id"][0]) for b in rows} == {"w1"}
    assert len({str(b.columns["emergency_id"][0]) for b in rows}) == 1  # cleared under the id it was raised
