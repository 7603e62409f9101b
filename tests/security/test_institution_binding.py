"""End to end through the gate: bank-a's agent (its SCRAM user, its signing key) is accepted by a
verifying worker; a batch whose rows claim bank-b, sent by bank-a, is dead-lettered with its reason.
The worker itself logs in through the gate with its service user (Faust/aiokafka SCRAM)."""

from __future__ import annotations

import asyncio
import time

import pytest

from finsa import wire
from finsa.batchauth import BatchVerifier, sign_headers
from finsa.kafka import ensure_topics, producer_config
from finsa.streams.faust_app import WorkerSettings
from finsa.streams.processor import FlowProcessor
from finsa.streams.service import StreamService
from tests.collectors.agent.agent_helpers import flow_batch, wait_for, write_config
from tests.security.conftest import PASSWORDS, needs_broker, quiet
from tests.fakes import MemoryStore, NoDetect

pytestmark = [pytest.mark.integration, needs_broker]

KEYS = {"bank-a": bytes.fromhex("a1" * 32), "bank-b": bytes.fromhex("b2" * 32)}




def _run_agent(tmp_path, broker) -> None:
    """bank-a's agent, in process: its SCRAM user and its signing key; one batch, sent."""
    from finsa.collectors.agent.agent import Agent
    from finsa.collectors.agent.config import load_agent_config

    (tmp_path / "broker.password").write_text(PASSWORDS["bank-a-agent"])
    (tmp_path / "signing.key").write_text(KEYS["bank-a"].hex())
    path = write_config(tmp_path, broker.bootstrap, extra=f'batch_signing_key_file = "{tmp_path / "signing.key"}"')
    path.write_text(path.read_text().replace("partitions = 2\n", f'''partitions = 2
security_protocol = "SASL_PLAINTEXT"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "bank-a-agent"
sasl_password_file = "{tmp_path / 'broker.password'}"
'''))
    agent = Agent(load_agent_config(path), path, retry_s=0.2).start(sources=False)
    try:
        assert agent.submit(flow_batch(1)) == 1
        assert wait_for(lambda: agent.spool.depth_batches == 0, timeout_s=30)
    finally:
        agent.stop()


def _send_forgeries(broker) -> None:
    """bank-a's user sends rows claiming bank-b, once signed as bank-a, once claiming to be bank-b."""
    from confluent_kafka import Producer

    creds = broker.client_settings("bank-a-agent", PASSWORDS["bank-a-agent"])
    producer = Producer(quiet(producer_config(broker.bootstrap, "forger", creds)))
    forged = flow_batch(2)
    forged.columns["institution_id"][:] = "bank-b"
    payload = wire.encode_batch(forged)
    producer.produce(wire.TOPICS["flows"], payload, key=b"bank-b", headers=sign_headers(payload, "bank-a", KEYS["bank-a"]))
    producer.produce(wire.TOPICS["flows"], payload, key=b"bank-b", headers=sign_headers(payload, "bank-b", KEYS["bank-a"]))
    assert producer.flush(10) == 0


def _dead_letters(broker, want: int) -> list[dict]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    worker = broker.client_settings("finsa-worker", PASSWORDS["finsa-worker"], "SCRAM-SHA-256")
    consumer = Consumer(quiet({**worker, "group.id": f"dlq-{time.time_ns()}", "session.timeout.ms": 6000}))
    consumer.assign([TopicPartition(wire.TOPICS["dlq"], 0, OFFSET_BEGINNING)])
    got, deadline = [], time.monotonic() + 30
    while len(got) < want and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            got.append(dict(msg.headers()))
    consumer.close()
    return got


def test_worker_accepts_its_institution_and_dead_letters_a_mismatch(tmp_path, sasl_broker) -> None:
    import faust

    worker = sasl_broker.client_settings("finsa-worker", PASSWORDS["finsa-worker"], "SCRAM-SHA-256")
    ensure_topics(sasl_broker.bootstrap, {wire.TOPICS["flows"]: 2, wire.TOPICS["alerts"]: 1, wire.TOPICS["dlq"]: 1,
                                          wire.TOPICS["heartbeats"]: 1},  # the sector creates topics, agents none
                  extra=quiet(worker))
    _run_agent(tmp_path, sasl_broker)
    _send_forgeries(sasl_broker)
    store = MemoryStore()
    processor = FlowProcessor(store, NoDetect(), verifier=BatchVerifier(KEYS))
    credentials = faust.SASLCredentials(username="finsa-worker", password=PASSWORDS["finsa-worker"],
                                        mechanism="SCRAM-SHA-256")
    settings = WorkerSettings(sasl_broker.bootstrap, app_id="w-sec", partitions=2, datadir=tmp_path / "faust",
                              session_timeout_s=4, broker_credentials=credentials)

    async def run() -> None:
        service = StreamService(settings, processor)
        await service.start()
        deadline = time.monotonic() + 60
        while processor.batches < 1 and time.monotonic() < deadline and service.failed is None:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        await service.stop()

    asyncio.run(run())
    reasons = sorted(h["reason"] for h in _dead_letters(sasl_broker, want=2))
    assert reasons == [b"bad_signature", b"institution_mismatch"]
    assert [set(b.columns["institution_id"]) for b in store.batches] == [{"bank-a"}]
