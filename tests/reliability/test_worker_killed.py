"""Fault 1: the stream worker is killed (SIGKILL) while it processes, then restarted.

Promise: every flow batch the broker acknowledged is stored exactly once, and every alert its flows
raise is stored once (the planted port scans: one alert per scanner, same id after the restart). The worker acks a
message only after its group's rows were written, so the messages of the groups in flight at
the kill are redelivered to the restarted worker; storage skips the batch ids it already has.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from finsa import wire

from tests.reliability.procs import committed, query_store, start_worker, table_parts, wait_caught_up
from tests.reliability.reconcile import stored_flows
from tests.reliability.report import Outcome
from tests.reliability.sources import flow_batches, publish

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.timeout(120)]

BATCHES, ROWS = 240, 200
SCAN_EVERY, SCAN_PORTS = 20, 60


def with_scans(batches: list) -> set[str]:
    """Plant a port scan (SYN, answered by RST) from its own scanner in every SCAN_EVERY-th batch;
    returns the scanners, each of which must come out as exactly one T1046 alert."""
    scanners = set()
    for i in range(0, len(batches), SCAN_EVERY):
        scanner = f"203.0.113.{i // SCAN_EVERY + 1}"
        cols, rows = batches[i].columns, slice(0, SCAN_PORTS)
        cols["src_ip"][rows] = wire.ips_from_strings([scanner] * SCAN_PORTS)
        cols["dst_ip"][rows] = wire.ips_from_strings(["198.51.100.7"] * SCAN_PORTS)
        cols["dst_port"][rows] = np.arange(1, SCAN_PORTS + 1)
        cols["src2dst_tcp_flags"][rows], cols["dst2src_tcp_flags"][rows] = 0x02, 0x14
        cols["src2dst_packets"][rows], cols["dst2src_packets"][rows] = 1, 1
        scanners.add(scanner)
    return scanners


def _wait_first_write(store, worker, timeout_s: float) -> None:
    """Return as soon as the worker wrote its first flows part: it is busy with the next groups."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert worker.alive, worker.log_tail()
        if table_parts(store) > 0:
            return
        time.sleep(0.02)
    raise AssertionError(f"the worker wrote nothing in {timeout_s} s:\n{worker.log_tail()}")


def test_worker_killed_mid_batch_stores_every_batch_exactly_once(broker, tmp_path, reliability) -> None:
    batches = flow_batches(BATCHES, ROWS)
    scanners = with_scans(batches)
    ends = publish(broker.bootstrap, batches)
    assert sum(ends.values()) == BATCHES
    store = tmp_path / "store"

    # groups of 64 messages, their flows written a group at a time (not one group and one write for
    # the whole 48k-row input), so the kill lands between writes
    worker = start_worker(broker.bootstrap, store, tmp_path / "worker1.log",
                          flags=("--group-max", "64", "--flow-write-rows", "1"))
    _wait_first_write(store, worker, timeout_s=60)
    worker.kill()
    committed_at_kill = sum(committed(broker.bootstrap).values())
    at_kill = stored_flows(store)  # the folder is free once the process died
    assert at_kill.rows < BATCHES * ROWS, "everything was stored before the kill: no fault injected"

    restarted = time.monotonic()
    worker = start_worker(broker.bootstrap, store, tmp_path / "worker2.log")
    try:
        assert wait_caught_up(broker.bootstrap, ends, timeout_s=60, worker=worker), worker.log_tail()
        recovery_s = time.monotonic() - restarted
    finally:
        assert worker.stop() == 0, worker.log_tail()

    final = stored_flows(store)
    ledger = query_store(store, "SELECT count() AS n, uniqExact(batch_id) AS ids FROM ingested_batches "
                                "WHERE record = 'flow'")[0]
    reliability(Outcome("worker SIGKILL mid-batch, restarted", BATCHES * ROWS, final.rows, final.duplicates,
                        BATCHES * ROWS - final.distinct_natural, recovery_s=recovery_s))
    assert final.rows == final.distinct_batch_flow == final.distinct_natural == BATCHES * ROWS
    assert int(ledger["ids"]) == BATCHES
    # the rows stored but not committed at the kill were redelivered, and storage skipped them
    assert at_kill.rows > committed_at_kill * ROWS
    # alerts: every planted scan is one alert, none lost, none counted twice
    scans = query_store(store, "SELECT entity, count() AS n FROM alerts FINAL WHERE technique = 'T1046' "
                               "GROUP BY entity")
    assert {r["entity"] for r in scans} == scanners
    assert all(int(r["n"]) == 1 for r in scans)
    dup = query_store(store, "SELECT count() AS n, uniqExact(alert_id) AS ids FROM alerts FINAL")[0]
    assert int(dup["n"]) == int(dup["ids"])
