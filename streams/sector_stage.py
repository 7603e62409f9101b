"""The sector picture in a worker: alerts and heartbeats in, warnings, campaigns and levels out.

:class:`SectorStage` wraps a :class:`~finsa.sector.picture.SectorPicture` with what a worker needs:
decoding messages, turning updates into wire batches, writing them to storage (idempotent: batch
ids are a hash of the rows), and a compact checkpoint (the picture pickled, base64 text) that the
Faust agent keeps in a table with a changelog, so a restarted worker resumes where it stopped.
Campaigns need every institution's alerts, so the alerts topic has one partition and one
consumer holds the sector picture.
"""

from __future__ import annotations

import base64
import pickle
import threading
import time
from typing import Callable, Sequence

from finsa import wire
from finsa.metrics import REGISTRY
from finsa.institutions import Registry
from finsa.sector.picture import SectorPicture
from finsa.sector.rows import update_batches
from finsa.storage.backend import BatchStore

UPDATES = REGISTRY.counter("finsa_sector_records_total", "Sector records produced, by kind", ["kind"])
STORE_ERRORS = REGISTRY.counter("finsa_sector_store_errors_total", "Sector records storage refused", ["kind", "error"])
SECTOR_DEAD = REGISTRY.counter("finsa_sector_messages_skipped_total", "Alert or heartbeat messages that did not decode", ["reason"])


class SectorStage:
    """Feeds a SectorPicture and writes what it concludes."""

    def __init__(self, picture: SectorPicture, store: BatchStore | None = None,
                 blocklist_sinks: Sequence[Callable[[list], None]] = ()) -> None:
        self.picture, self.store = picture, store
        self.blocklist_sinks = list(blocklist_sinks)
        #: Called with (record name, batch) for every alert batch seen and every update produced
        #: (warning, emergency, campaign, level): the notifier listens here (wired by the app layer).
        self.record_sinks: list[Callable[[str, wire.RecordBatch], None]] = []
        self._blocklist_key: tuple = ()
        self.alerts_seen = 0
        self._lock = threading.RLock()  # the agent, the timer and the flow processor share the picture

    @staticmethod
    def _decode(payload: bytes, rtype: wire.RecordType) -> wire.RecordBatch | None:
        try:
            return wire.decode_batch(payload, expect=rtype)
        except wire.WireFormatError as exc:
            SECTOR_DEAD.inc(reason=exc.reason)
            return None

    def observe_alerts(self, payload: bytes) -> None:
        """Feed an alert batch to the picture, and store it: alerts agents forward from Zeek or
        Suricata reach storage here (a worker's own alert batches are skipped as repeats)."""
        batch = self._decode(payload, wire.ALERT)
        if batch is None:
            return
        if self.store is not None:
            try:
                self.store.insert(batch)
            except Exception as exc:  # noqa: BLE001 - counted; the picture still learns from it
                STORE_ERRORS.inc(kind="alert", error=type(exc).__name__)
        with self._lock:
            self.alerts_seen += len(batch)
            self.picture.observe_alerts(batch)
        self._to_sinks("alert", batch)

    def observe_heartbeats(self, payload: bytes, arrival_ms: int | None = None) -> None:
        batch = self._decode(payload, wire.HEARTBEAT)
        if batch is None:
            return
        with self._lock:
            self.picture.observe_heartbeats(batch, arrival_ms=arrival_ms or int(time.time() * 1000))
        if self.store is not None:
            self.store.insert(batch)

    def observe_flows(self, flows: wire.RecordBatch) -> None:
        with self._lock:
            self.picture.observe_flows(flows)

    def tick(self, now_ms: int | None = None) -> dict[str, wire.RecordBatch]:
        """Advance the picture; store and return the update as {record name: batch}."""
        with self._lock:
            batches = update_batches(self.picture.tick(now_ms).rows())
            entries = self.picture.blocklist() if self.blocklist_sinks else []
        key = tuple(sorted((e.kind, e.value) for e in entries))
        if key != self._blocklist_key:
            self._blocklist_key = key
            for sink in self.blocklist_sinks:
                sink(entries)
        for name, batch in batches.items():
            UPDATES.inc(len(batch), kind=name)
            self._to_sinks(name, batch)
            if self.store is not None:
                try:
                    self.store.insert(batch)
                except Exception as exc:  # noqa: BLE001 - still published on its topic; counted
                    STORE_ERRORS.inc(kind=name, error=type(exc).__name__)
        return batches

    def _to_sinks(self, name: str, batch: wire.RecordBatch) -> None:
        for sink in self.record_sinks:
            try:
                sink(name, batch)
            except Exception as exc:  # noqa: BLE001 - a sink's failure must not stop the picture; counted
                STORE_ERRORS.inc(kind=name, error=f"sink:{type(exc).__name__}")

    def blocklist(self) -> list:
        """The sector's indicators to block now (BlockEntry list)."""
        with self._lock:
            return self.picture.blocklist()

    def checkpoint(self) -> str:
        with self._lock:
            return base64.b64encode(pickle.dumps(self.picture, protocol=pickle.HIGHEST_PROTOCOL)).decode()

    def restore(self, text: str) -> None:
        """Continue from a checkpoint, with the registry and inventory this stage was started with
        (a file edited while the worker was down wins over the checkpoint's copy)."""
        with self._lock:
            restored: SectorPicture = pickle.loads(base64.b64decode(text))
            running = self.picture
            restored.use_configuration(running.registry, running.enricher.assets, running.enricher.providers)
            self.picture = restored

    def use_registry(self, registry: Registry) -> None:
        """Take an edited institutions file (e.g. from a FileWatcher thread) without a restart."""
        with self._lock:
            self.picture.use_configuration(registry)


def feed_intel(engine) -> Callable[[list], None]:  # a DetectionEngine
    """A blocklist sink giving the sector's indicators to every ``intel`` detector of ``engine``,
    so a connection to a campaign's attacker is detected at every institution, not only those hit."""
    def sink(entries: list) -> None:
        addresses = [e.value for e in entries if e.kind in ("ip", "net")]
        domains = [e.value for e in entries if e.kind == "domain"]
        ja4 = [e.value for e in entries if e.kind == "ja4"]
        for detector in engine.detectors:
            if getattr(detector, "name", "") == "intel":
                detector.set_indicators(addresses=addresses, domains=domains, ja4=ja4, source="sector")
    return sink
