"""Fault 5: the agent's spool fills up while the broker is away (its limit, or the disk itself).

Promise: batches that do not fit are refused and COUNTED (``finsa_agent_flows_total{outcome=
"dropped"}``, ``finsa_spool_dropped_total``): the one loss finsa allows at the agent. The agent
does not crash, what it spooled before is sent when the broker is back, and it spools again once
there is room. Reconciliation: sent == spooled + dropped, and storage holds exactly the spooled.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from finsa.streams.broker import EmbeddedBroker, free_port
from tests.conftest import IN_CI
from tests.reliability.procs import metric, start_agent, start_worker, topic_ends, wait_agent_ready, wait_caught_up
from tests.reliability.reconcile import stored_flows
from tests.reliability.report import Outcome
from tests.reliability.sources import RECORDS_PER_DATAGRAM, NetflowExporter, agent_config

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.timeout(150)]

SPOOLED, DROPPED = 'outcome="spooled"', 'outcome="dropped"'
AFTER = 8  # datagrams sent once the spool drained: 240 flows, 4 batches, they fit in 64 KiB


def _flows(metrics: int, outcome: str) -> int:
    return int(metric(metrics, "finsa_agent_flows_total", outcome))


def _fill_until_refused(exporter: NetflowExporter, metrics: int, agent, max_datagrams: int = 1500) -> None:
    """Send until the agent refuses batches, then as much again: it must keep running."""
    while exporter.datagrams < max_datagrams:
        exporter.send(10, pause_s=0.005)
        time.sleep(0.05)
        if _flows(metrics, DROPPED) or metric(metrics, "finsa_export_sink_errors_total"):
            break
    exporter.send(exporter.datagrams // 2, pause_s=0.005)
    time.sleep(1.5)  # the receiver hands over its last batch (1 s flush interval)
    assert agent.alive, agent.log_tail()


def _wait_depth_zero(metrics: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while metric(metrics, "finsa_spool_depth_batches") > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    return metric(metrics, "finsa_spool_depth_batches") == 0


def run_spool_full(tmp_path: Path, spool_dir: Path, max_bytes: int, label: str, reliability) -> None:
    broker_port, listen, metrics = free_port(), free_port(), free_port()
    config = agent_config(tmp_path / "agent", f"127.0.0.1:{broker_port}", listen, metrics, spool_dir=spool_dir,
                          max_bytes=max_bytes, segment_bytes=64 << 10, max_batch_rows=2 * RECORDS_PER_DATAGRAM)
    agent = start_agent(config, tmp_path / "agent.log")
    exporter, broker, worker = NetflowExporter(listen), None, None
    try:
        wait_agent_ready(agent, listen, metrics)
        _fill_until_refused(exporter, metrics, agent)
        broker = EmbeddedBroker(port=broker_port, log_path=tmp_path / "broker.log").start()
        back = time.monotonic()
        worker = start_worker(broker.bootstrap, tmp_path / "store", tmp_path / "worker.log")
        assert _wait_depth_zero(metrics, 30), agent.log_tail()
        spooled_before = _flows(metrics, SPOOLED)
        exporter.send(AFTER, pause_s=0.01)  # room again: these are spooled and sent
        deadline = time.monotonic() + 20
        while _flows(metrics, SPOOLED) + _flows(metrics, DROPPED) < exporter.records and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _wait_depth_zero(metrics, 30), agent.log_tail()
        recovery_s = time.monotonic() - back
        spooled, counted_loss = _flows(metrics, SPOOLED), _flows(metrics, DROPPED)
        assert spooled - spooled_before == AFTER * RECORDS_PER_DATAGRAM, "the agent did not spool again once drained"
        assert wait_caught_up(broker.bootstrap, topic_ends(broker.bootstrap), timeout_s=60, worker=worker)
    finally:
        exporter.close()
        agent.stop()
        if worker is not None:
            worker.stop()
        if broker is not None:
            broker.stop()
    final = stored_flows(tmp_path / "store", natural_key="sensor_id, src_port, dst_port")
    sent = exporter.records
    reliability(Outcome(label, sent, final.rows, final.duplicates, sent - counted_loss - final.distinct_natural,
                        counted_loss=counted_loss, recovery_s=recovery_s))
    assert counted_loss > 0 and spooled + counted_loss == sent  # every refused flow is counted
    assert final.rows == final.distinct_batch_flow == final.distinct_natural == spooled


def test_spool_limit_reached_refuses_counted_batches_and_recovers(tmp_path, reliability) -> None:
    run_spool_full(tmp_path, tmp_path / "spool", 64 << 10, "spool full (max_bytes), broker away", reliability)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs (needs root to mount)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        (pytest.fail if IN_CI and os.geteuid() == 0 else pytest.skip)(f"cannot mount a tmpfs: {done.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_disk_full_at_the_spool_refuses_counted_batches_and_recovers(tmp_path, tiny_disk, reliability) -> None:
    run_spool_full(tmp_path, tiny_disk / "spool", 1 << 30, "disk full at the spool (tmpfs), broker away",
                   reliability)
