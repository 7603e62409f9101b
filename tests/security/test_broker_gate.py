"""SASL/SCRAM at the broker gate, against a real Tansu broker on loopback.

Each institution's agent has its own SCRAM user; the worker has a service user. Right credentials
publish and consume; a wrong password, an unknown user, no SASL at all and a request sent before
login are refused; an agent may produce but not read the flow topic.
"""

from __future__ import annotations

import gc
import socket
import struct
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from finsa import wire
from finsa.kafka import ensure_topics
from finsa.streams.broker_gate import LOGINS, REFUSED
from tests.security.conftest import PASSWORDS, needs_broker, quiet

pytestmark = [pytest.mark.integration, needs_broker]


def _produce(settings: dict, topic: str, value: bytes, errors: list | None = None) -> list:
    """Produce one message; the delivery errors (empty when it was stored)."""
    failed: list = []
    producer = Producer(quiet({**settings, "message.timeout.ms": 4000, "enable.idempotence": True}, errors))
    producer.produce(topic, value, on_delivery=lambda err, msg: failed.append(err) if err else None)
    left = producer.flush(10)
    return failed + ([f"{left} undelivered"] if left else [])


def _consume(settings: dict, topic: str, errors: list | None = None, timeout_s: float = 15.0) -> list[bytes]:
    consumer = Consumer(quiet({**settings, "group.id": f"t-{uuid.uuid4().hex}", "enable.auto.commit": False,
                               "session.timeout.ms": 6000}, errors))
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not got and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                got.append(msg.value())
            if errors and any(e.code() == KafkaError._AUTHENTICATION for e in errors):
                break
    finally:
        consumer.close()
    return got


def _topic(broker) -> str:
    """The flow topic (agents write data topics only) with one partition, created by the worker's
    service user on this test's own broker."""
    name = wire.TOPICS["flows"]
    worker = broker.client_settings("finsa-worker", PASSWORDS["finsa-worker"], "SCRAM-SHA-256")
    assert ensure_topics(broker.bootstrap, {name: 1}, extra=quiet(worker)) == [name]
    return name


def _login_refused(settings: dict) -> bool:
    """True once librdkafka reports an authentication error for these settings."""
    errors: list = []
    admin = AdminClient(quiet(settings, errors))  # connects to the bootstrap server at once
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        admin.poll(0.1)
    return any(e.code() == KafkaError._AUTHENTICATION for e in errors)


def test_each_institution_publishes_with_its_own_user_and_the_worker_reads(sasl_broker) -> None:
    topic = _topic(sasl_broker)
    ok_before = LOGINS.value(outcome="ok")
    for user in ("bank-a-agent", "bank-b-agent"):
        assert _produce(sasl_broker.client_settings(user, PASSWORDS[user]), topic, user.encode()) == []
    worker = sasl_broker.client_settings("finsa-worker", PASSWORDS["finsa-worker"], "SCRAM-SHA-256")
    assert _consume(worker, topic) == [b"bank-a-agent"]
    assert LOGINS.value(outcome="ok") >= ok_before + 3


def test_wrong_password_unknown_user_and_wrong_mechanism_are_refused(sasl_broker) -> None:
    failed_before = LOGINS.value(outcome="failed")
    assert _login_refused(sasl_broker.client_settings("bank-a-agent", "not-the-password"))
    assert _login_refused(sasl_broker.client_settings("bank-c-agent", PASSWORDS["bank-a-agent"]))
    # bank-a's user has a SCRAM-SHA-512 credential only
    assert _login_refused(sasl_broker.client_settings("bank-a-agent", PASSWORDS["bank-a-agent"], "SCRAM-SHA-256"))
    assert LOGINS.value(outcome="failed") >= failed_before + 3


def test_producer_and_consumer_with_a_wrong_password_move_nothing(sasl_broker) -> None:
    topic = _topic(sasl_broker)
    errors: list = []
    assert _produce(sasl_broker.client_settings("bank-a-agent", "guess"), topic, b"x", errors) != []
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors)
    assert _produce(sasl_broker.client_settings("bank-a-agent", PASSWORDS["bank-a-agent"]), topic, b"real") == []
    errors = []
    assert _consume(sasl_broker.client_settings("finsa-worker", "guess", "SCRAM-SHA-256"), topic, errors) == []
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors)


def test_a_request_before_login_is_closed_unanswered_and_counted(sasl_broker) -> None:
    # a Metadata request (key 3) before any login: the gate closes the connection, unanswered.
    # No Kafka client is alive in this test, so no background reconnect moves the counter.
    refused_before = REFUSED.value(reason="not_authenticated")
    header = struct.pack(">hhih", 3, 1, 7, 4) + b"evil" + struct.pack(">i", -1)
    with socket.create_connection((sasl_broker.host, sasl_broker.port), timeout=5) as sock:
        sock.sendall(struct.pack(">i", len(header)) + header)
        assert sock.recv(64) == b""
    assert REFUSED.value(reason="not_authenticated") == refused_before + 1


def test_clients_without_sasl_are_refused(sasl_broker) -> None:
    refused_before = REFUSED.value(reason="not_authenticated")
    admin = AdminClient(quiet({"bootstrap.servers": sasl_broker.bootstrap}))
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=3)
    del admin  # librdkafka stops reconnecting once the client is destroyed
    gc.collect()
    assert REFUSED.value(reason="not_authenticated") > refused_before


def test_an_agent_may_produce_but_not_read_the_flows(sasl_broker) -> None:
    topic = _topic(sasl_broker)
    agent = sasl_broker.client_settings("bank-a-agent", PASSWORDS["bank-a-agent"])
    assert _produce(agent, topic, b"bank-a flows") == []
    refused_before = REFUSED.value(reason="api_not_allowed")
    assert _consume(agent, topic, timeout_s=3.0) == []
    assert REFUSED.value(reason="api_not_allowed") > refused_before
    worker = sasl_broker.client_settings("finsa-worker", PASSWORDS["finsa-worker"], "SCRAM-SHA-256")
    assert _consume(worker, topic) == [b"bank-a flows"]
