"""The work done on one flow message, without Faust: decode, detect, store.

Kept apart from the Faust agent so it can be tested and benchmarked on its own. Storage writes
are retried with backoff until they succeed (the agent does not move on, so the offset is not
committed: nothing is lost while storage is away), and they are idempotent: the flow batch is
written under its own batch id and the alert batch under an id derived from it, so a redelivered
message leaves storage unchanged.

>>> from finsa import wire
>>> class Memory:
...     def __init__(self): self.ids = set()
...     def insert(self, batch):
...         new = batch.batch_id not in self.ids; self.ids.add(batch.batch_id); return new
>>> class NoDetect:
...     def process(self, flows): return wire.ALERT.make_batch({}, n_rows=0)
>>> proc = FlowProcessor(Memory(), NoDetect())
>>> payload = wire.encode_batch(wire.FLOW.make_batch({"dst_port": [22, 80]}))
>>> proc.process(payload).flows, proc.process(b"junk").dead_reason
(2, 'truncated')
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Protocol

from finsa import wire
from finsa.metrics import REGISTRY

FLOWS_IN = REGISTRY.counter("finsa_worker_flows_total", "Flows decoded from the flow topic")
BATCHES_IN = REGISTRY.counter("finsa_worker_batches_total", "Flow messages processed, by outcome", ["outcome"])
ALERTS_OUT = REGISTRY.counter("finsa_worker_alerts_total", "Alerts produced by the detectors")
STORE_RETRIES = REGISTRY.counter("finsa_worker_storage_retries_total", "Storage writes retried after a failure")
DUPLICATES = REGISTRY.counter("finsa_worker_duplicate_batches_total", "Batches storage already had (redeliveries)")


class Store(Protocol):
    def insert(self, batch: wire.RecordBatch) -> bool: ...


class Engine(Protocol):
    def process(self, flows: wire.RecordBatch) -> wire.RecordBatch: ...


@dataclass
class Outcome:
    """What processing one message gave."""

    flows: int = 0
    alerts: wire.RecordBatch | None = None
    dead_reason: str | None = None
    dead_detail: str = ""


def derived_batch_id(batch_id: bytes, purpose: bytes) -> bytes:
    """A batch id that is a pure function of another one (so redelivery repeats it)."""
    return hashlib.blake2b(batch_id + purpose, digest_size=16).digest()


class FlowProcessor:
    """decode -> detect -> store, for one flow message at a time."""

    def __init__(self, store: Store, engine: Engine, max_backoff_s: float = 5.0,
                 should_stop=lambda: False) -> None:
        self.store, self.engine = store, engine
        self.max_backoff_s, self.should_stop = max_backoff_s, should_stop
        self.batches = 0

    def process(self, payload: bytes) -> Outcome:
        try:
            flows = wire.decode_batch(payload, expect=wire.FLOW)
        except wire.WireFormatError as exc:
            BATCHES_IN.inc(outcome="dead_letter")
            return Outcome(dead_reason=exc.reason, dead_detail=str(exc))
        alerts = self.engine.process(flows)
        alerts.batch_id = derived_batch_id(flows.batch_id, b"alerts")
        if not self.write(flows):
            DUPLICATES.inc()
        if len(alerts):
            self.write(alerts)
            ALERTS_OUT.inc(len(alerts))
        FLOWS_IN.inc(len(flows))
        BATCHES_IN.inc(outcome="ok")
        self.batches += 1
        return Outcome(flows=len(flows), alerts=alerts if len(alerts) else None)

    def write(self, batch: wire.RecordBatch) -> bool:
        """Insert with retries and exponential backoff until it succeeds (or we are stopping)."""
        delay = 0.05
        while True:
            try:
                return self.store.insert(batch)
            except Exception:  # noqa: BLE001 - any storage failure is retried, then surfaced
                if self.should_stop():
                    raise
                STORE_RETRIES.inc()
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
