"""Publishing flow batches to Kafka with confluent-kafka: acks=all and an idempotent producer.

Each message carries one wire batch (see :mod:`finsa.wire`) of at most ``max_rows`` records and is
keyed by institution id, so one institution's batches stay in order on one partition and one
worker keeps that institution's detector state. Delivery is counted per outcome; ``flush()``
waits for every outstanding acknowledgement.

:meth:`BatchPublisher.publish_encoded` sends an already encoded batch (the agent's spool holds
encoded batches); ``on_error`` hears client-level errors such as "all brokers down", and
:meth:`BatchPublisher.abort` drops what is still queued (each dropped message is reported to
``on_delivery`` as failed) so a sender can start over from its spool.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from finsa import wire
from finsa.batchauth import sign_headers
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
                 on_delivery: Callable[[bytes, str | None], None] | None = None,
                 on_error: Callable[[str, bool], None] | None = None,
                 signing_keys: Mapping[str, bytes] | None = None,
                 on_acknowledged: Callable[[str], None] | None = None, compress: bool = True) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        self.config = producer_config(bootstrap, client_id, extra)
        self.max_rows, self.on_delivery, self.on_error = max_rows, on_delivery, on_error
        #: batches encoded by :meth:`publish` are zlib-compressed (the wire format's flag, which every
        #: reader inflates): several times smaller on the bus and in a broker that keeps everything
        self.compress = compress
        self.signing_keys = dict(signing_keys or {})
        self._producer: Any | None = None  # a confluent_kafka.Producer once started
        self.acknowledged = 0
        self.failed = 0
        #: ``on_acknowledged(kind)`` for every message the broker acknowledged (kind: the record
        #: type's name, e.g. ``flow``, ``arp``; ``""`` for already-encoded messages)
        self.on_acknowledged = on_acknowledged

    def start(self) -> "BatchPublisher":
        from confluent_kafka import Producer

        config = dict(self.config)
        if self.on_error is not None:
            config["error_cb"] = self._client_error
        self._producer = Producer(config)
        return self

    def _client_error(self, err) -> None:
        """librdkafka's error_cb: ``on_error(name, all_brokers_down_or_fatal)``."""
        from confluent_kafka import KafkaError

        if self.on_error is None:  # registered only with an on_error, see start()
            return
        severe = err.code() == KafkaError._ALL_BROKERS_DOWN or err.fatal()
        self.on_error(err.name() if hasattr(err, "name") else str(err), severe)

    def publish_encoded(self, payload: bytes, topic: str, key: bytes, batch_id: bytes, rows: int) -> None:
        """Queue one already encoded wire batch."""
        if self._producer is None:
            raise BrokerError("publisher not started")
        self._produce(topic, payload, key, batch_id, rows)

    def poll(self, timeout_s: float = 0.0) -> int:
        """Serve delivery callbacks; returns how many were served."""
        return 0 if self._producer is None else self._producer.poll(timeout_s)

    @property
    def outstanding(self) -> int:
        """Messages queued or in flight, not yet acknowledged or failed."""
        return 0 if self._producer is None else len(self._producer)

    def abort(self, timeout_s: float = 5.0) -> None:
        """Drop every queued and in-flight message (reported as failed) and close the client."""
        if self._producer is None:
            return
        self._producer.purge(in_queue=True, in_flight=True, blocking=False)
        self._producer.flush(timeout_s)
        self._producer = None

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
            payload = wire.encode_batch(part, compress=self.compress)
            self._produce(topic, payload, key, part.batch_id, len(part), batch.type.name)
        return len(parts)

    def _produce(self, topic: str, payload: bytes, key: bytes, batch_id: bytes, rows: int, kind: str = "") -> None:
        def delivered(err, msg) -> None:
            if err is None:
                self.acknowledged += 1
                if self.on_acknowledged is not None:
                    self.on_acknowledged(kind)
                MESSAGES.inc(outcome="acknowledged")
                RECORDS.inc(rows, topic=topic)
            else:
                self.failed += 1
                MESSAGES.inc(outcome="failed")
            if self.on_delivery:
                self.on_delivery(batch_id, None if err is None else str(err))

        producer = self._producer
        if producer is None:
            raise BrokerError("publisher not started")
        headers = self._signature(payload, key)
        while True:
            try:
                producer.produce(topic, payload, key=key, on_delivery=delivered, headers=headers)
                MESSAGES.inc(outcome="queued")
                break
            except BufferError:  # local queue full: let deliveries drain (backpressure)
                producer.poll(0.1)
        producer.poll(0)

    def _signature(self, payload: bytes, key: bytes) -> list[tuple[str, bytes]] | None:
        """Headers signing the message as its institution's (the message key), when keys are set."""
        if not self.signing_keys:
            return None
        institution = key.decode("utf-8", "replace")
        secret = self.signing_keys.get(institution)
        if secret is None:
            raise BrokerError(f"no signing key for institution {institution!r}")
        return sign_headers(payload, institution, secret)

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
