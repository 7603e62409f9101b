"""Fault 4: the collector agent is killed (SIGKILL) with batches in its spool, then restarted.

Promise: a batch the agent spooled survives the kill (segments are on disk, a torn tail is
truncated); the restarted agent sends the old batches first, in the order they were spooled, then
the new ones; nothing spooled is lost and storage holds each flow once.
"""

from __future__ import annotations

import time

import pytest

from finsa.streams.broker import EmbeddedBroker, free_port
from tests.reliability.procs import (metric, read_flows, start_agent, start_worker, topic_ends, wait_agent_ready,
                                     wait_caught_up, wait_metric)
from tests.reliability.reconcile import stored_flows
from tests.reliability.report import Outcome
from tests.reliability.sources import RECORDS_PER_DATAGRAM, NetflowExporter, agent_config

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.timeout(120)]

OLD, NEW = 40, 20  # datagrams spooled before the kill, and sent after the restart


def test_agent_killed_with_a_full_spool_drains_it_in_order_after_restart(tmp_path, reliability) -> None:
    broker_port, listen, metrics = free_port(), free_port(), free_port()
    config = agent_config(tmp_path / "agent", f"127.0.0.1:{broker_port}", listen, metrics,  # no broker yet
                          max_batch_rows=2 * RECORDS_PER_DATAGRAM)
    agent = start_agent(config, tmp_path / "agent1.log")
    exporter = NetflowExporter(listen)
    broker = worker = None
    try:
        wait_agent_ready(agent, listen, metrics)
        exporter.send(OLD, pause_s=0.01)
        spooled = wait_metric(metrics, "finsa_agent_flows_total", 'outcome="spooled"', OLD * RECORDS_PER_DATAGRAM, 20)
        assert spooled == OLD * RECORDS_PER_DATAGRAM, agent.log_tail()
        depth = metric(metrics, "finsa_spool_depth_batches")
        agent.kill()
        assert depth > 0 and list((tmp_path / "agent" / "spool").glob("*.seg"))

        broker = EmbeddedBroker(port=broker_port, log_path=tmp_path / "broker.log").start()
        restarted = time.monotonic()
        agent = start_agent(config, tmp_path / "agent2.log")
        worker = start_worker(broker.bootstrap, tmp_path / "store", tmp_path / "worker.log")
        wait_agent_ready(agent, listen, metrics)
        exporter.send(NEW, pause_s=0.01)
        wait_metric(metrics, "finsa_agent_flows_total", 'outcome="spooled"', NEW * RECORDS_PER_DATAGRAM, 20)
        deadline = time.monotonic() + 30
        while metric(metrics, "finsa_spool_depth_batches") > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert metric(metrics, "finsa_spool_depth_batches") == 0, agent.log_tail()
        drained_s = time.monotonic() - restarted

        messages = read_flows(broker.bootstrap)
        assert len({p for p, _, _ in messages}) == 1  # one institution: one partition, one order
        first_seen: dict[bytes, int] = {}
        for _, _, batch in messages:
            first_seen.setdefault(batch.batch_id, int(batch.columns["src_port"].min()) - 1024)
        order = list(first_seen.values())
        assert len(order) >= (OLD + NEW) // 2  # many batches, so the order means something
        assert order == sorted(order), "the spool was not sent in the order it was written"
        assert wait_caught_up(broker.bootstrap, topic_ends(broker.bootstrap), timeout_s=60, worker=worker)
    finally:
        exporter.close()
        agent.stop()
        if worker is not None:
            assert worker.stop() == 0, worker.log_tail()
        if broker is not None:
            broker.stop()

    final = stored_flows(tmp_path / "store", natural_key="sensor_id, src_port, dst_port")
    reliability(Outcome("agent SIGKILL with a full spool, restarted", exporter.records, final.rows,
                        final.duplicates, exporter.records - final.distinct_natural, recovery_s=drained_s))
    assert final.rows == final.distinct_batch_flow == final.distinct_natural == exporter.records
