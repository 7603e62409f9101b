"""A real stream worker (Tansu broker, Faust, chdb store, detectors): alerts from a scan, a
redelivered batch stored once, and a malformed message in the dead-letter topic with its reason."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from finsa import wire
from finsa.kafka import ensure_topics, producer_config
from finsa.streams.faust_app import WorkerSettings
from finsa.streams.broker import EmbeddedBroker
from finsa.streams.processor import FlowProcessor
from finsa.streams.service import StreamService

pytestmark = pytest.mark.integration

SCANNER = "203.0.113.66"


def scan_batch(start_ms: int = 1_770_000_000_000, ports: int = 200) -> wire.RecordBatch:
    n = ports
    t = start_ms + np.arange(n) * 20
    return wire.FLOW.make_batch({
        "flow_id": np.arange(n) + 1, "first_seen_ms": t, "last_seen_ms": t + 1,
        "institution_id": ["bank-a"] * n, "sensor_id": ["bank-a-tap1"] * n, "ip_version": [4] * n,
        "protocol": [6] * n, "src_ip": [SCANNER] * n, "dst_ip": ["198.51.100.10"] * n,
        "src_port": [40000] * n, "dst_port": np.arange(1, n + 1), "src2dst_packets": [1] * n,
        "src2dst_bytes": [60] * n, "dst2src_packets": [1] * n, "dst2src_bytes": [54] * n,
        "src2dst_tcp_flags": [2] * n, "dst2src_tcp_flags": [20] * n, "end_reason": [3] * n,
    })


@pytest.fixture
def broker():
    with EmbeddedBroker() as b:
        ensure_topics(b.bootstrap, {wire.TOPICS["flows"]: 2, wire.TOPICS["alerts"]: 2, wire.TOPICS["dlq"]: 1})
        yield b


def _consume_all(bootstrap: str, topic: str, expect: int, timeout_s: float = 30) -> list:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    consumer.subscribe([topic])
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < expect and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            got.append(msg)
    consumer.close()
    return got


def test_worker_detects_stores_once_and_dead_letters(broker, tmp_path) -> None:
    from confluent_kafka import Producer

    from finsa.detectors.engine import DetectionEngine
    from finsa.storage.backend import open_store

    store = open_store(data_dir=tmp_path / "store")
    store.migrate()
    processor = FlowProcessor(store, DetectionEngine())
    settings = WorkerSettings(broker.bootstrap, app_id="w-test", datadir=tmp_path / "faust", session_timeout_s=4)
    payload = wire.encode_batch(scan_batch())
    producer = Producer(producer_config(broker.bootstrap, "test"))
    for value in (payload, b"this is not a batch", payload):  # the batch is delivered twice
        producer.produce(wire.TOPICS["flows"], value, key=b"bank-a")
    assert producer.flush(10) == 0

    async def run() -> None:
        service = StreamService(settings, processor)
        await service.start()
        deadline = time.monotonic() + 60
        while processor.batches < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        await service.stop()

    asyncio.run(run())
    assert processor.batches == 2
    assert store.query("SELECT count() FROM flows").rows[0][0] == 200  # not 400
    entities = {r[0] for r in store.query("SELECT entity FROM alerts FINAL WHERE technique = 'T1046'").rows}
    assert SCANNER in entities
    dead = _consume_all(broker.bootstrap, wire.TOPICS["dlq"], 1)
    assert len(dead) == 1 and dead[0].value() == b"this is not a batch"
    headers = dict(dead[0].headers())
    assert headers["reason"] == b"truncated" and headers["topic"] == wire.TOPICS["flows"].encode()
    published = _consume_all(broker.bootstrap, wire.TOPICS["alerts"], 1)
    assert published and wire.decode_batch(published[0].value(), expect=wire.ALERT).columns["entity"][0] == SCANNER
    store.close()
