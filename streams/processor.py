"""The work done on one flow message, without Faust: decode, detect, store.

Kept apart from the Faust agent so it can be tested and benchmarked on its own. Storage writes
are retried with backoff until they succeed (the agent does not move on, so the offset is not
committed: nothing is lost while storage is away), and they are idempotent: the flow batch is
written under its own batch id and the alert batch under an id derived from it, so a redelivered
message leaves storage unchanged.

>>> from finsa import wire
>>> class Memory:
...     def __init__(self): self.ids = set()
...     def insert_many(self, batches):
...         new = {b.batch_id for b in batches} - self.ids; self.ids |= new; return len(new)
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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from finsa import wire
from finsa.batchauth import BatchAuthError, BatchVerifier
from finsa.metrics import REGISTRY
from finsa.storage.backend import BatchStore
from finsa.streams.held_flows import HeldFlows

if TYPE_CHECKING:  # imported where used, see _kind
    from finsa.streams.progress import Progress

FLOWS_IN = REGISTRY.counter("finsa_worker_flows_total", "Flows decoded from the flow topic")
BATCHES_IN = REGISTRY.counter("finsa_worker_batches_total", "Flow messages processed, by outcome", ["outcome"])
ALERTS_OUT = REGISTRY.counter("finsa_worker_alerts_total", "Alerts produced by the detectors")
STORE_RETRIES = REGISTRY.counter("finsa_worker_storage_retries_total", "Storage writes retried after a failure")
ARP_IN = REGISTRY.counter("finsa_worker_arp_bindings_total", "ARP bindings decoded from the flow topic")
DUPLICATES = REGISTRY.counter("finsa_worker_duplicate_batches_total", "Batches storage already had (redeliveries)")


class Engine(Protocol):
    def process(self, flows: wire.RecordBatch) -> wire.RecordBatch: ...


@dataclass
class GroupOutcome:
    """What processing a group of messages gave; ``dead`` lists (index, reason, detail)."""

    flows: int = 0
    alerts: wire.RecordBatch | None = None
    dead: list[tuple[int, str, str]] = field(default_factory=list)
    #: this group and every group before it are in storage (False: its flows are held for a
    #: larger write, see :class:`~finsa.streams.held_flows.HeldFlows`; acknowledge it later)
    stored: bool = True


@dataclass
class Prepared:
    """A group decoded, verified and detected, not yet stored (see FlowProcessor.prepare_group)."""

    dead: list[tuple[int, str, str]] = field(default_factory=list)
    good: list[wire.RecordBatch] = field(default_factory=list)  # flow batches, as received
    flows: wire.RecordBatch | None = None  # the good ones as one batch
    alerts: wire.RecordBatch | None = None
    bindings: list[wire.RecordBatch] = field(default_factory=list)  # ARP binding batches
    arp_alerts: wire.RecordBatch | None = None
    arp_rows: int = 0


@dataclass
class Outcome:
    """What processing one message gave."""

    flows: int = 0
    alerts: wire.RecordBatch | None = None
    dead_reason: str | None = None
    dead_detail: str = ""


def _kind(payload: bytes | bytearray) -> str:
    from finsa.streams.progress import message_kind

    return message_kind(payload)


def derived_batch_id(batch_id: bytes, purpose: bytes) -> bytes:
    """A batch id that is a pure function of another one (so redelivery repeats it)."""
    return hashlib.blake2b(batch_id + purpose, digest_size=16).digest()


class FlowProcessor:
    """decode -> detect -> store, for one flow message or a group of them."""

    def __init__(self, store: BatchStore, engine: Engine, max_backoff_s: float = 5.0,
                 should_stop=lambda: False, verifier: BatchVerifier | None = None,
                 flow_observers: Sequence[Callable[[wire.RecordBatch], None]] = (),
                 held: HeldFlows | None = None) -> None:
        self.store, self.engine, self.verifier = store, engine, verifier
        #: with it, :meth:`store_group` holds flows for a larger write (:meth:`write_held`)
        self.held = held
        self.flow_observers = list(flow_observers)
        self.max_backoff_s, self.should_stop = max_backoff_s, should_stop
        self.batches = 0
        self.progress: Progress | None = None  # told what was processed and stored

    def process(self, payload: bytes) -> Outcome:
        """One message: decode, detect, store."""
        group = self.process_group([payload])
        if group.dead:
            _, reason, detail = group.dead[0]
            return Outcome(dead_reason=reason, dead_detail=detail)
        return Outcome(flows=group.flows, alerts=group.alerts)

    def process_group(self, payloads: Sequence[bytes | bytearray], headers: Sequence | None = None) -> "GroupOutcome":
        """Several messages at once: one detection pass and one store write for all good ones.

        Storage costs a fixed few tens of ms per write, so a worker groups the messages that
        arrived together. Idempotency stays per message: storage skips each batch id it has.
        With a verifier, a message must be signed by the institution its rows belong to
        (``headers[i]`` are message i's Kafka headers). It is :meth:`prepare_group` (decode,
        verify, detect) then :meth:`store_group` (write, observe): a worker runs the two in
        different threads, so a group is detected while the one before it is written.
        """
        return self.store_group(self.prepare_group(payloads, headers))

    def prepare_group(self, payloads: Sequence[bytes | bytearray], headers: Sequence | None = None) -> "Prepared":
        """Decode, verify and detect a group (no storage). Groups must be prepared in order."""
        good: list[wire.RecordBatch] = []
        dead: list[tuple[int, str, str]] = []
        for index, payload in enumerate(payloads):
            try:
                good.append(self._accept(payload, headers[index] if headers else None))
            except (wire.WireFormatError, BatchAuthError) as exc:
                BATCHES_IN.inc(outcome="dead_letter")
                dead.append((index, exc.reason, str(exc)))
                self._done(_kind(payload), 1, 0)
        prepared = Prepared(dead=dead, bindings=[b for b in good if b.type is wire.ARP],
                            good=[b for b in good if b.type is wire.FLOW])
        if prepared.bindings:
            joined, prepared.arp_alerts = self._detect(prepared.bindings, b"arp-alerts")
            prepared.arp_rows = len(joined)
        if prepared.good:
            prepared.flows, prepared.alerts = self._detect(prepared.good, b"alerts")
        return prepared

    def _detect(self, batches: list[wire.RecordBatch], purpose: bytes) -> tuple[wire.RecordBatch, wire.RecordBatch]:
        """``batches`` as one batch, and its alerts under an id derived from theirs (a redelivered
        group of the same batches gives the same alert batch id: stored once)."""
        joined = batches[0] if len(batches) == 1 else wire.RecordBatch.concat(batches)
        alerts = self.engine.process(joined)
        alerts.batch_id = derived_batch_id(b"".join(b.batch_id for b in batches), purpose)
        return joined, alerts

    def store_group(self, prepared: "Prepared") -> "GroupOutcome":
        """Write what :meth:`prepare_group` gave (retried until stored), then tell the observers.

        Every store write costs a fixed part (a new part per table and roll-up), so a group makes
        at most three: its ARP bindings, its alerts (ARP alerts included, each batch still
        idempotent under its own id), and its flows. The alerts go before the flows: an analyst
        sees an alert a flow write sooner (a group's flow write is its largest), and a worker
        stopped between the two writes stores the flows on redelivery, the alerts once.
        """
        if prepared.bindings:
            self._store_bindings(prepared)
        arp_alerts = prepared.arp_alerts if prepared.arp_alerts is not None and len(prepared.arp_alerts) else None
        flows, alerts, good = prepared.flows, prepared.alerts, prepared.good
        if flows is None or alerts is None:
            if arp_alerts is not None:
                self._write_alerts([arp_alerts])
            return GroupOutcome(alerts=arp_alerts, dead=prepared.dead, stored=not self.held)
        self._write_alerts([a for a in (alerts, arp_alerts) if a is not None and len(a)])
        if arp_alerts is not None:  # handed on with the flows' alerts (to the alerts topic)
            alerts = wire.RecordBatch.concat([alerts, arp_alerts], alerts.batch_id)
        stored = True
        if self.held is None:
            self._write_flows(good, [flows])
        else:
            self.held.add(good, flows)
            stored = self.held.due() and self.write_held()
        return GroupOutcome(flows=len(flows), alerts=alerts if len(alerts) else None, dead=prepared.dead, stored=stored)

    def write_held(self) -> bool:
        """Write the flows held for a larger write (see :class:`HeldFlows`); False if none."""
        if not self.held:
            return False
        batches, joined = self.held.take()
        self._write_flows(batches, joined)
        return True

    def _write_flows(self, good: list[wire.RecordBatch], joined: list[wire.RecordBatch]) -> None:
        """Write flow batches in one write, then show each group's flows to the observers."""
        written = self.write_many(good)
        DUPLICATES.inc(len(good) - written)
        for flows in joined:
            for observe in self.flow_observers:
                observe(flows)
            FLOWS_IN.inc(len(flows))
        BATCHES_IN.inc(len(good), outcome="ok")
        self.batches += len(good)
        self._done("flow", len(good), written)

    def _write_alerts(self, batches: list[wire.RecordBatch]) -> None:
        if batches:
            self.write_many(batches)
            ALERTS_OUT.inc(sum(len(b) for b in batches))

    def _store_bindings(self, prepared: "Prepared") -> None:
        """Store a group's ARP binding batches (their alerts go with the group's alerts)."""
        batches = prepared.bindings
        written = self.write_many(batches)
        DUPLICATES.inc(len(batches) - written)
        ARP_IN.inc(prepared.arp_rows)
        BATCHES_IN.inc(len(batches), outcome="ok")
        self._done("arp", len(batches), written)

    def _done(self, kind: str, n: int, stored: int) -> None:
        if self.progress is not None:
            self.progress.done(kind, n, stored)

    def _accept(self, payload: bytes | bytearray, headers) -> wire.RecordBatch:
        """Decode a message (flows or ARP bindings), checking its signature first when this
        worker verifies them."""
        institution = self.verifier.check(payload, headers) if self.verifier is not None else None
        batch = wire.decode_batch(payload)
        if batch.type is not wire.FLOW and batch.type is not wire.ARP:
            raise wire.WireFormatError("wrong_record_type", f"expected flow or arp, got {batch.type.name}")
        if institution is not None:
            BatchVerifier.check_rows(batch.columns["institution_id"], institution)
        return batch

    def write_many(self, batches: list[wire.RecordBatch]) -> int:
        """Store batches of one record type in one write; returns how many were new."""
        return int(self._retry(self.store.insert_many, batches))

    def write(self, batch: wire.RecordBatch) -> bool:
        """Insert one batch with retries; False when storage already had it."""
        return bool(self._retry(self.store.insert, batch))

    def _retry(self, fn, arg):
        """Call until it succeeds, with exponential backoff (or raise once we are stopping)."""
        delay = 0.05
        while True:
            try:
                return fn(arg)
            except Exception:  # any storage failure is retried, then surfaced
                if self.should_stop():
                    raise
                STORE_RETRIES.inc()
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
