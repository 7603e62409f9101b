"""Publishing flow batches to Kafka with confluent-kafka: acks=all and an idempotent producer.

Each message carries one wire batch (see :mod:`finsa.wire`) of at most ``max_rows`` records and is
keyed by institution id, so one institution's batches stay in order on one partition and one
worker keeps that institution's detector state. Delivery is counted per outcome; ``flush()``
waits for every outstanding acknowledgement.
"""

from __future__ import annotations

from typing import Callable, Mapping

from finsa import wire
from finsa.errors import BrokerError
from finsa.kafka import producer_config
from finsa.metrics import REGISTRY

MESSAGES = REGISTRY.counter("finsa_publisher_messages_total", "Batches handed to Kafka, by outcome", ["outcome"])
RECORDS = REGISTRY.counter("finsa_publisher_records_total", "Records acknowledged by the broker", ["topic"])


class BatchPublisher:
    """Send wire batches to a topic.

    ``on_delivery(batch_id, error)`` is called for every message once the broker acknowledged
    (error None) or gave up on it, e.g. to release it from a spool.
    """

    def __init__(self, bootstrap: str, client_id: str = "finsa-collector", max_rows: int = 10_000,
                 extra: Mapping[str, object] | None = None,
                 on_delivery: Callable[[bytes, str | None], None] | None = None) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        self.config = producer_config(bootstrap, client_id, extra)
        self.max_rows, self.on_delivery = max_rows, on_delivery
        self._producer = None
        self.acknowledged = 0
        self.failed = 0

    def start(self) -> "BatchPublisher":
        from confluent_kafka import Producer

        self._producer = Producer(self.config)
        return self

    def publish(self, batch: wire.RecordBatch, topic: str | None = None) -> int:
        """Queue a batch (split into messages of max_rows); returns the number of messages."""
        if self._producer is None:
            raise BrokerError("publisher not started")
        topic = topic or batch.type.topic
        n = len(batch)
        parts = [batch] if n <= self.max_rows else [
            batch.take(slice(i, i + self.max_rows)) for i in range(0, n, self.max_rows)]
        for part in parts:
            if len(part) == 0:
                continue
            key = _key_of(part)
            payload = wire.encode_batch(part)
            self._produce(topic, payload, key, part.batch_id, len(part))
        return len(parts)

    def _produce(self, topic: str, payload: bytes, key: bytes, batch_id: bytes, rows: int) -> None:
        def delivered(err, msg) -> None:
            if err is None:
                self.acknowledged += 1
                MESSAGES.inc(outcome="acknowledged")
                RECORDS.inc(rows, topic=topic)
            else:
                self.failed += 1
                MESSAGES.inc(outcome="failed")
            if self.on_delivery:
                self.on_delivery(batch_id, None if err is None else str(err))

        while True:
            try:
                self._producer.produce(topic, payload, key=key, on_delivery=delivered)
                MESSAGES.inc(outcome="queued")
                break
            except BufferError:  # local queue full: let deliveries drain (backpressure)
                self._producer.poll(0.1)
        self._producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for acknowledgements; returns how many messages are still outstanding."""
        return 0 if self._producer is None else self._producer.flush(timeout_s)

    def stop(self, timeout_s: float = 30.0) -> int:
        left = self.flush(timeout_s)
        self._producer = None
        return left


def _key_of(batch: wire.RecordBatch) -> bytes:
    inst = batch.columns.get("institution_id")
    return (str(inst[0]) if inst is not None and len(inst) else "").encode()
