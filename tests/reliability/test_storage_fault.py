"""Fault 3: storage fails, then is slow, for a while, under a running worker.

Promise: while writes fail the worker retries with backoff and commits no offset past the failing
group (so a crash then would redeliver it); slow writes hold the group but do not get the worker
thrown out of the consumer group; once storage answers again everything lands, exactly once.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.reliability.procs import committed, start_worker, wait_caught_up
from tests.reliability.reconcile import stored_flows
from tests.reliability.report import Outcome
from tests.reliability.sources import flow_batches, publish

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.timeout(120)]

ROWS = 200


def _hits(fault_file: Path) -> list[str]:
    try:
        return Path(f"{fault_file}.hits").read_text().split("\n")[:-1]
    except OSError:
        return []


def _wait_hits(fault_file: Path, kind: str, at_least: int, worker, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(h.startswith(kind) for h in _hits(fault_file)) < at_least:
        assert worker.alive and time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.1)


def test_storage_down_then_slow_commits_nothing_until_written_and_loses_nothing(broker, tmp_path,
                                                                                  reliability) -> None:
    batches = flow_batches(60, ROWS)
    store, fault = tmp_path / "store", tmp_path / "storage.fault"
    ends = publish(broker.bootstrap, batches[:20])
    worker = start_worker(broker.bootstrap, store, tmp_path / "worker.log", fault_file=fault)
    try:
        assert wait_caught_up(broker.bootstrap, ends, timeout_s=60, worker=worker), worker.log_tail()
        before = committed(broker.bootstrap)

        fault.write_text("raise")  # storage down
        ends = publish(broker.bootstrap, batches[20:40])
        _wait_hits(fault, "raise", 3, worker)
        time.sleep(3.5)  # longer than Faust's commit interval (2.8 s)
        assert committed(broker.bootstrap) == before, "an offset was committed while its rows were not stored"

        fault.write_text("sleep 2")  # storage answers, slowly
        ends = publish(broker.bootstrap, batches[40:])
        _wait_hits(fault, "sleep", 2, worker)
        fault.unlink()  # storage healthy again
        recovered = time.monotonic()
        assert wait_caught_up(broker.bootstrap, ends, timeout_s=45, worker=worker), worker.log_tail()
        recovery_s = time.monotonic() - recovered
    finally:
        assert worker.stop() == 0, worker.log_tail()

    final = stored_flows(store)
    sent = len(batches) * ROWS
    reliability(Outcome("storage down, then slow (writes retried)", sent, final.rows, final.duplicates,
                        sent - final.distinct_natural, recovery_s=recovery_s))
    assert final.rows == final.distinct_batch_flow == final.distinct_natural == sent
