"""Sending the spool to the broker in order, releasing each batch only on the broker's ack.

:class:`SpoolSender` runs in one thread. While connected it keeps up to ``window`` spooled
batches in flight (oldest first) and releases each from the spool when the broker acknowledges
it. When a send fails or the client reports every broker down, it aborts what is in flight,
drops the Kafka client, and retries to connect every ``retry_s``: connecting means
:func:`finsa.kafka.ensure_topics` succeeds (so topics are re-created on a broker that came back
empty) and a fresh producer is made. It then sends again from the oldest unacknowledged batch.
So order is kept and nothing unacknowledged is lost; a batch the broker stored but whose ack was
lost is sent twice (at-least-once: storage dedupes on the batch id).

A spool payload is ``key_len u8 | key | wire batch``: the Kafka key (institution id) travels with
the batch, and the topic and row count are read from the wire header.
"""

from __future__ import annotations

import struct
import threading
import time
from typing import Callable, Mapping

from finsa import wire
from finsa.collectors.agent.publisher import BatchPublisher
from finsa.collectors.agent.spool import Spool
from finsa.errors import BrokerError
from finsa.kafka import ensure_topics
from finsa.metrics import REGISTRY

__all__ = ["SpoolSender", "pack_spooled", "unpack_spooled"]

SEND_ERRORS = REGISTRY.counter("finsa_agent_send_errors_total", "Failed sends and connection attempts", ["kind"])
CONNECTED = REGISTRY.gauge("finsa_agent_broker_connected", "1 while the agent has a working broker connection")
_WIRE_HEAD = struct.Struct("<4sHBBHHI16s")


def pack_spooled(key: bytes, encoded: bytes) -> bytes:
    """Spool payload of an encoded batch and its Kafka key."""
    if len(key) > 255:
        raise ValueError("key longer than 255 bytes")
    return bytes((len(key),)) + key + encoded


def unpack_spooled(payload: bytes) -> tuple[bytes, bytes, str, int]:
    """(key, encoded batch, topic, rows) of a spool payload; WireFormatError when it is not one."""
    key_len = payload[0] if payload else 0
    key, encoded = payload[1:1 + key_len], payload[1 + key_len:]
    if len(encoded) < _WIRE_HEAD.size:
        raise wire.WireFormatError("truncated", "spooled batch")
    magic, _, code, _, _, _, rows, _ = _WIRE_HEAD.unpack_from(encoded)
    rtype = wire.RECORD_TYPES.get(code)
    if magic != wire.MAGIC or rtype is None:
        raise wire.WireFormatError("bad_magic", "spooled batch")
    return key, encoded, rtype.topic, rows


class SpoolSender:
    """Drain a :class:`Spool` to Kafka in order (see the module docstring)."""

    def __init__(self, spool: Spool, bootstrap: str, topics: Mapping[str, int],
                 client_settings: Mapping[str, object] | None = None, client_id: str = "finsa-agent",
                 window: int = 64, retry_s: float = 1.0, message_timeout_ms: int = 30_000,
                 on_tick: Callable[["SpoolSender"], None] | None = None,
                 signing_keys: Mapping[str, bytes] | None = None) -> None:
        self.spool, self.topics = spool, dict(topics)
        self.signing_keys = dict(signing_keys or {})
        self.window, self.retry_s, self.on_tick = window, retry_s, on_tick
        self.configure(bootstrap, client_settings, client_id, message_timeout_ms)
        self.publisher: BatchPublisher | None = None
        self._cursor = 0
        self._in_flight: set[bytes] = set()
        self._broken = False
        self.sent = 0
        self.reconnects = 0

    def configure(self, bootstrap: str, client_settings: Mapping[str, object] | None = None,
                  client_id: str = "finsa-agent", message_timeout_ms: int = 30_000) -> None:
        """New broker settings; the next connection uses them (call :meth:`reset` to reconnect now)."""
        self.bootstrap, self.client_id = bootstrap, client_id
        self.client_settings = dict(client_settings or {})
        self.message_timeout_ms = message_timeout_ms

    @property
    def connected(self) -> bool:
        return self.publisher is not None

    def run(self, stop: threading.Event, drain: threading.Event | None = None) -> None:
        """Loop until ``stop``; with ``drain`` set, also end once the spool is empty."""
        while not stop.is_set():
            if drain is not None and drain.is_set() and self.spool.depth_batches == 0:
                break
            self.step()
            if self.on_tick:
                self.on_tick(self)
            if self.publisher is None:
                stop.wait(self.retry_s)
        if self.publisher is not None and not self._broken:
            self.publisher.flush(5.0)  # serve the acks of what is in flight
        self.reset()

    def step(self, poll_s: float = 0.05) -> None:
        """One round: connect if needed, send what fits in the window, serve acks."""
        if self._broken:
            self.reset()
            return
        if self.publisher is None and not self._connect():
            return
        room = self.window - len(self._in_flight)
        if room > 0:
            for entry in self.spool.entries(after_seq=self._cursor, limit=room):
                self._send(entry)
        self.publisher.poll(poll_s)

    def _send(self, entry) -> None:
        try:
            key, encoded, topic, rows = unpack_spooled(self.spool.read(entry))
        except (wire.WireFormatError, OSError):
            SEND_ERRORS.inc(kind="unreadable_spool_entry")
            self.spool.ack(entry.batch_id)  # cannot ever be sent: release it, counted
            return
        self._in_flight.add(entry.batch_id)
        self._cursor = entry.seq
        self.publisher.publish_encoded(encoded, topic, key, entry.batch_id, rows)
        self.sent += 1

    def publish_now(self, batch: wire.RecordBatch) -> bool:
        """Send a batch outside the spool (heartbeats); False when not connected."""
        if self.publisher is None:
            return False
        self.publisher.publish(batch)
        return True

    def _connect(self) -> bool:
        extra = {**self.client_settings}
        try:
            ensure_topics(self.bootstrap, self.topics, timeout_s=max(self.retry_s * 2, 1.0), extra=extra)
        except BrokerError:
            SEND_ERRORS.inc(kind="connect")
            return False
        producer_extra = {**extra, "message.timeout.ms": self.message_timeout_ms}
        self.publisher = BatchPublisher(self.bootstrap, self.client_id, extra=producer_extra,
                                        on_delivery=self._delivered, on_error=self._client_error,
                                        signing_keys=self.signing_keys).start()
        self._cursor = 0  # resend from the oldest unacknowledged batch
        self._broken = False
        self.reconnects += 1
        CONNECTED.set(1)
        return True

    def _delivered(self, batch_id: bytes, error: str | None) -> None:
        self._in_flight.discard(batch_id)
        if error is None:
            self.spool.ack(batch_id)
        else:
            SEND_ERRORS.inc(kind="delivery")
            self._broken = True

    def _client_error(self, name: str, severe: bool) -> None:
        if severe:
            SEND_ERRORS.inc(kind="brokers_down")
            self._broken = True

    def request_reset(self) -> None:
        """Ask the sender thread to drop its client and reconnect (e.g. new broker settings)."""
        self._broken = True

    def reset(self) -> None:
        """Abort what is in flight and drop the client; the next step reconnects."""
        publisher, self.publisher = self.publisher, None
        if publisher is not None:
            publisher.abort()
        self._in_flight.clear()
        self._cursor = 0
        self._broken = False
        CONNECTED.set(0)

    def wait_empty(self, timeout_s: float, give_up=lambda: False) -> bool:
        """Block until the spool is empty (another thread runs the sender), ``timeout_s`` passed or
        ``give_up()``; True if it is empty."""
        deadline = time.monotonic() + timeout_s
        while self.spool.depth_batches and time.monotonic() < deadline and not give_up():
            time.sleep(0.05)
        return self.spool.depth_batches == 0
