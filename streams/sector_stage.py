"""The sector picture in a worker: alerts and heartbeats in, warnings, campaigns and levels out.

:class:`SectorStage` wraps a :class:`~finsa.sector.picture.SectorPicture` with what a worker needs:
decoding messages, turning updates into wire batches, writing them to storage (idempotent: batch
ids are a hash of the rows), and a checkpoint (the picture's learned state as versioned JSON,
:mod:`~finsa.sector.state_codec`) that the Faust agent keeps in a table with a changelog, so a
restarted worker resumes where it stopped. The changelog is a topic, so the checkpoint is data:
never a pickle; one that does not decode is counted and the worker starts from a fresh picture.
Campaigns need every institution's alerts, so the alerts topic has one partition and one
consumer holds the sector picture.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Sequence

from finsa import wire
from finsa.batchauth import SERVICE_SIGNER, BatchAuthError, BatchVerifier, ReplayGuard
from finsa.metrics import REGISTRY
from finsa.institutions import Registry
from finsa.sector.geo import load_tables
from finsa.sector.picture import SectorPicture
from finsa.sector.rows import update_batches
from finsa.sector.state_codec import StateFormatError, decode_picture, encode_picture
from finsa.storage.backend import BatchStore

LOG = logging.getLogger(__name__)

UPDATES = REGISTRY.counter("finsa_sector_records_total", "Sector records produced, by kind", ["kind"])
STORE_ERRORS = REGISTRY.counter("finsa_sector_store_errors_total", "Sector records storage refused", ["kind", "error"])
RESTORES = REGISTRY.counter("finsa_sector_restores_total", "Sector checkpoints restored, by outcome", ["outcome"])
SECTOR_DEAD = REGISTRY.counter("finsa_sector_messages_skipped_total",
                               "Alert or heartbeat messages refused (undecodable, unsigned, forged, replayed)", ["reason"])


class SectorStage:
    """Feeds a SectorPicture and writes what it concludes.

    With a ``verifier``, an alert or heartbeat message must be signed by the institution of its
    rows (or by the sector's own workers, :data:`~finsa.batchauth.SERVICE_SIGNER`) and not be a
    batch seen before; ``observe_*`` return the reason of a refusal (None when taken) so the
    worker can dead-letter it. Without one, everything is taken (the worker says so at start).
    """

    def __init__(self, picture: SectorPicture, store: BatchStore | None = None,
                 blocklist_sinks: Sequence[Callable[[list], None]] = (),
                 verifier: BatchVerifier | None = None) -> None:
        self.picture, self.store, self.verifier = picture, store, verifier
        self._replays = ReplayGuard()
        self.blocklist_sinks = list(blocklist_sinks)
        #: Called with (record name, batch) for every alert batch seen and every update produced
        #: (warning, emergency, campaign, level): the notifier listens here (wired by the app layer).
        self.record_sinks: list[Callable[[str, wire.RecordBatch], None]] = []
        self._blocklist_key: tuple = ()
        self.alerts_seen = 0
        self._lock = threading.RLock()  # the agent, the timer and the flow processor share the picture

    def _accept(self, payload: bytes, rtype: wire.RecordType, headers) -> tuple[wire.RecordBatch, str | None] | str:
        """The batch and who signed it (None without a verifier), or the reason it is refused (counted)."""
        try:
            batch = wire.decode_batch(payload, expect=rtype)
            signer = None
            if self.verifier is not None:
                signer = self.verifier.check_batch(payload, headers, batch.columns["institution_id"])
                with self._lock:
                    self._replays.check(batch.batch_id)
            return batch, signer
        except (wire.WireFormatError, BatchAuthError) as exc:
            SECTOR_DEAD.inc(reason=exc.reason)
            return exc.reason

    def observe_alerts(self, payload: bytes, headers=None) -> str | None:
        """Feed an alert batch to the picture, and store it: alerts agents forward from Zeek or
        Suricata reach storage here. A worker's own alert batches were stored before they were
        sent: signed by the sector's own signer they are not written again (unsigned, the store
        skips them as repeats). Returns why the batch was refused, or None."""
        accepted = self._accept(payload, wire.ALERT, headers)
        if isinstance(accepted, str):
            return accepted
        batch, signer = accepted
        if self.store is not None and signer != SERVICE_SIGNER:
            try:
                self.store.insert(batch)
            except Exception as exc:  # noqa: BLE001 - counted; the picture still learns from it
                STORE_ERRORS.inc(kind="alert", error=type(exc).__name__)
        with self._lock:
            self.alerts_seen += len(batch)
            self.picture.observe_alerts(batch)
        self._to_sinks("alert", batch)
        return None

    def observe_heartbeats(self, payload: bytes, headers=None, arrival_ms: int | None = None) -> str | None:
        """Feed a heartbeat batch; returns why it was refused, or None."""
        accepted = self._accept(payload, wire.HEARTBEAT, headers)
        if isinstance(accepted, str):
            return accepted
        batch = accepted[0]
        with self._lock:
            self.picture.observe_heartbeats(batch, arrival_ms=arrival_ms or int(time.time() * 1000))
        if self.store is not None:
            self.store.insert(batch)
        return None

    @staticmethod
    def warm() -> None:
        """Load what the first alert would otherwise load on the worker's event loop (the GeoIP
        tables: ~0.4 s of CPU, more on a loaded machine); :class:`StreamService` runs it in a
        thread at start-up. A failure is logged: the first alert then meets it again, as before."""
        try:
            load_tables()
        except Exception as exc:  # noqa: BLE001 - only a head start; the look-up path raises it where it matters
            LOG.warning("GeoIP tables not loaded at start-up: %s", exc)

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
        """The picture's learned state as JSON text (see :mod:`finsa.sector.state_codec`)."""
        with self._lock:
            return encode_picture(self.picture)

    def restore(self, text: str) -> bool:
        """Continue from a checkpoint, with the registry and inventory this stage was started with
        (a file edited while the worker was down wins over the checkpoint's copy).

        A checkpoint that is not a valid sector state (an old pickle, a planted record) is
        refused, counted and logged: the stage keeps its current picture. True when restored.
        """
        with self._lock:
            try:
                restored = decode_picture(text, self.picture)
            except StateFormatError as exc:
                RESTORES.inc(outcome="refused")
                LOG.error("sector checkpoint refused (%s): starting from a fresh sector picture", exc)
                return False
            running = self.picture
            restored.use_configuration(running.registry, running.enricher.assets, running.enricher.providers)
            self.picture = restored
            RESTORES.inc(outcome="restored")
            return True

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
