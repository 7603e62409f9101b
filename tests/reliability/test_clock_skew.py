"""Fault 6: clock skew between agents (an exporter whose clock is ten minutes behind).

Two agents, two institutions, each fed by a NetFlow exporter that scans; bank-b's exporter clock
is 10 minutes slow, so its flows carry times 10 minutes in the past. Promise: storage holds every
row of both; the detectors, which work in flow time per institution, still alert on the skewed
one; the skew is visible in storage (flow time vs ``stored_at``). What finsa does NOT do: correct
flow times, or flag an exporter whose clock is off (the heartbeat carries the agent's clock, not
the exporter's).
"""

from __future__ import annotations

import time

import pytest

from finsa.streams.broker import free_port
from tests.reliability.procs import (Proc, metric, query_store, start_agent, start_worker, topic_ends,
                                     wait_agent_ready, wait_caught_up)
from tests.reliability.reconcile import stored_flows
from tests.reliability.report import Outcome
from tests.reliability.sources import NetflowExporter, agent_config

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.timeout(120)]

SKEW_S = -600
SITES = {"bank-a": ("192.0.2.10", 0), "bank-b": ("192.0.2.20", SKEW_S)}  # scanner address, exporter clock offset


def test_skewed_agent_is_stored_and_detected_and_its_skew_is_visible(broker, tmp_path, reliability) -> None:
    worker = start_worker(broker.bootstrap, tmp_path / "store", tmp_path / "worker.log")
    agents: list[tuple[Proc, NetflowExporter, int]] = []
    try:
        for inst, (scanner, offset_s) in SITES.items():
            listen, metrics = free_port(), free_port()
            config = agent_config(tmp_path / inst, broker.bootstrap, listen, metrics, institution=inst)
            agents.append((start_agent(config, tmp_path / f"{inst}.log"), NetflowExporter(
                listen, clock_offset_s=offset_s, src_ip=scanner, scan=True), metrics))
        for agent, exporter, metrics in agents:
            wait_agent_ready(agent, exporter.addr[1], metrics)
        for _ in range(10):  # both scan at the same (true) time
            for _, exporter, _ in agents:
                exporter.send(1)
            time.sleep(0.05)
        for agent, _exporter, metrics in agents:
            deadline = time.monotonic() + 20
            while metric(metrics, "finsa_spool_acknowledged_total") == 0 or \
                    metric(metrics, "finsa_spool_depth_batches") > 0:
                assert time.monotonic() < deadline, agent.log_tail()
                time.sleep(0.1)
        assert wait_caught_up(broker.bootstrap, topic_ends(broker.bootstrap), timeout_s=60, worker=worker)
    finally:
        for agent, exporter, _ in agents:
            exporter.close()
            agent.stop()
        assert worker.stop() == 0, worker.log_tail()

    store = tmp_path / "store"
    sent = sum(e.records for _, e, _ in agents)
    final = stored_flows(store, natural_key="sensor_id, src_port, dst_port")
    reliability(Outcome(f"exporter clock skew {SKEW_S} s on one of two agents", sent, final.rows,
                        final.duplicates, sent - final.distinct_natural))
    assert final.rows == final.distinct_batch_flow == final.distinct_natural == sent
    alerted = {r["institution_id"]: r["entity"] for r in query_store(
        store, "SELECT institution_id, entity FROM alerts WHERE technique = 'T1046'")}
    assert alerted == {inst: scanner for inst, (scanner, _) in SITES.items()}
    lag = {r["institution_id"]: float(r["lag_s"]) for r in query_store(
        store, "SELECT institution_id, avg(toUnixTimestamp(stored_at) - last_seen_ms / 1000) AS lag_s "
               "FROM flows GROUP BY institution_id")}
    assert lag["bank-b"] - lag["bank-a"] == pytest.approx(-SKEW_S, abs=30)  # the skew shows, nothing corrects it
