"""Fault 2: the broker goes down (SIGKILL) and comes back while an agent keeps capturing.

Tansu runs with its ``s3://`` storage engine on a local S3 server (moto), so what it acknowledged
survives the restart. Promise: the agent spools what it captures during the outage and sends it
when the broker is back; the worker resumes (or, when the outage caught it still starting, exits
non-zero and is restarted as its systemd unit does); storage holds every flow the exporter sent,
once.
"""

from __future__ import annotations

import threading
import time

import pytest

from finsa.streams.broker import EmbeddedBroker, free_port
from tests.reliability.procs import (MotoS3, metric, start_agent, start_worker, topic_ends, wait_agent_ready,
                                     wait_caught_up, wait_metric)
from tests.reliability.reconcile import stored_flows
from tests.reliability.report import Outcome
from tests.reliability.sources import NetflowExporter, agent_config

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.timeout(150)]


def _s3_broker(port: int, s3: MotoS3, log) -> EmbeddedBroker:
    return EmbeddedBroker(port=port, storage_engine=f"s3://{s3.bucket}/", env=s3.env, log_path=log).start()


def test_broker_down_while_agent_captures_loses_nothing_with_s3_storage(tmp_path, reliability) -> None:
    pytest.importorskip("moto")
    s3 = MotoS3(tmp_path / "moto.log").start()
    port, listen, metrics = free_port(), free_port(), free_port()
    broker = _s3_broker(port, s3, tmp_path / "broker.log")
    agent = start_agent(agent_config(tmp_path / "agent", broker.bootstrap, listen, metrics), tmp_path / "agent.log")
    worker = start_worker(broker.bootstrap, tmp_path / "store", tmp_path / "worker.log")
    exporter, stop = NetflowExporter(listen), threading.Event()
    sender = threading.Thread(target=lambda: [exporter.send(1, pause_s=0.05) for _ in iter(stop.is_set, True)])
    try:
        wait_agent_ready(agent, listen, metrics)
        sender.start()
        wait_metric(metrics, "finsa_spool_acknowledged_total", "", 2, 20)
        # the worker is up and storing before the outage (a worker that cannot reach the broker
        # when it starts exits non-zero, for its supervisor to restart it)
        assert wait_caught_up(broker.bootstrap, topic_ends(broker.bootstrap, idle_s=0.5), 60, worker)
        broker.kill()  # outage: the agent keeps capturing into its spool
        time.sleep(5)
        assert not agent.alive or metric(metrics, "finsa_agent_broker_connected") == 0
        broker = _s3_broker(port, s3, tmp_path / "broker.log")
        back = time.monotonic()
        if not worker.alive:  # the outage reached it while Faust's start was still running (seen
            # once, on a loaded machine): it exits non-zero, and its supervisor starts it again
            # (deploy/systemd/finsa-worker.service: Restart=on-failure); nothing may be lost either way
            assert worker.stop() != 0 and "KafkaConnectionError" in worker.log_tail(), worker.log_tail()
            worker = start_worker(broker.bootstrap, tmp_path / "store", tmp_path / "worker.log")
        time.sleep(2)
        stop.set()
        sender.join()
        wait_metric(metrics, "finsa_agent_flows_total", 'outcome="spooled"', exporter.records, 20)
        deadline = time.monotonic() + 30
        while metric(metrics, "finsa_spool_depth_batches") > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert metric(metrics, "finsa_spool_depth_batches") == 0, agent.log_tail()
        assert wait_caught_up(broker.bootstrap, topic_ends(broker.bootstrap), timeout_s=60, worker=worker)
        recovery_s = time.monotonic() - back
    finally:
        stop.set()
        exporter.close()
        agent.stop()
        worker_rc = worker.stop()
        broker.stop()
        s3.stop()
    assert worker_rc == 0, worker.log_tail()
    final = stored_flows(tmp_path / "store", natural_key="sensor_id, src_port, dst_port")
    reliability(Outcome("broker SIGKILL + restart (s3:// engine), agent capturing", exporter.records,
                        final.rows, final.duplicates, exporter.records - final.distinct_natural,
                        recovery_s=recovery_s))
    assert final.rows == final.distinct_batch_flow == final.distinct_natural == exporter.records
