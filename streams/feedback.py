"""Analyst feedback reaching the detectors: accepted allowlist entries, polled from the store.

An analyst's false-positive verdict proposes an allowlist entry; once the operator accepts it
(web view or ``finsa allowlist accept``), it is a row in the store's ``allowlist_entries``
(:mod:`finsa.storage.triage`). Every worker runs a :class:`FeedbackPoller`: every ``interval_s``
it reads the accepted entries and hands them to its engine
(:meth:`finsa.detectors.engine.DetectionEngine.use_accepted`), so all workers apply them live,
without a file the web view would have to write. Verdicts given while the worker runs (alerts
closed as false positive ...) go to the engine too
(:meth:`~finsa.detectors.engine.DetectionEngine.take_verdicts`): detectors that learn online take
them (the anomaly detector learns a false positive's vector as normal). An entry that does not validate (unknown
detector, entity that is not an address) is counted in ``finsa_feedback_entries_refused_total``
and skipped; a store that cannot be read keeps the entries already applied.

>>> from finsa.storage.backend import open_store
>>> from finsa.storage.triage import Actor, TriageLog
>>> from finsa.detectors.engine import DetectionEngine
>>> store = open_store(); _ = store.migrate(); engine = DetectionEngine()
>>> log = TriageLog(store); ana = Actor("ana", "institution", "bank-a")
>>> e = log.propose_entry(ana, entity="10.0.0.9", detector="portscan", institution_id="bank-a",
...                       reason="scanner", expires_ms=4_000_000_000_000)
>>> _ = log.decide_entry(Actor("otto", "operator", "operator"), e["entry_id"], True)
>>> FeedbackPoller(store, engine).poll()
1
>>> engine._state.allowlist.allows("portscan", "bank-a", "10.0.0.9", 1_750_000_000_000)
True
>>> store.close()
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from typing import Any

from pydantic import ValidationError

from finsa.detectors.allowlist import AllowEntry, Allowlist
from finsa.metrics import REGISTRY
from finsa.storage.triage import TriageLog

__all__ = ["FeedbackPoller", "entries_of"]

POLLS = REGISTRY.counter("finsa_feedback_polls_total", "Reads of the accepted allowlist entries", ["outcome"])
REFUSED = REGISTRY.counter("finsa_feedback_entries_refused_total", "Accepted allowlist entries that did not validate")
_log = logging.getLogger(__name__)


def entries_of(rows: list[dict[str, Any]]) -> list[AllowEntry]:
    """Allowlist entries from stored rows (invalid ones counted and skipped)."""
    out = []
    for row in rows:
        try:
            expires = dt.datetime.fromtimestamp(int(row["expires_ms"]) / 1000, tz=dt.timezone.utc)
            out.append(AllowEntry(entity=row["entity"], detectors=[row["detector"]],
                                  institutions=[row["institution_id"]], reason=row["reason"] or "accepted",
                                  expires=expires))
        except (ValidationError, ValueError, KeyError, OverflowError, OSError):
            REFUSED.inc()
    return out


class FeedbackPoller:
    """Polls ``store`` for accepted entries and applies them to ``engine`` (see the module docstring)."""

    def __init__(self, store: Any, engine: Any, interval_s: float = 5.0) -> None:
        if not interval_s > 0:
            raise ValueError("interval_s must be positive")
        self.log, self.engine, self.interval_s = TriageLog(store), engine, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._applied: tuple | None = None
        self.applied = 0  # entries applied now
        self.verdicts_since_ms = int(time.time() * 1000)  # verdicts given while this worker runs

    def poll(self) -> int:
        """Read and apply once; returns how many entries are applied."""
        try:
            rows = self.log.accepted_entries()
        except Exception:  # noqa: BLE001 - the store may be briefly unavailable: keep what is applied
            POLLS.inc(outcome="error")
            return -1
        POLLS.inc(outcome="ok")
        key = tuple(sorted(r["entry_id"] for r in rows))
        self._pass_verdicts()
        if key != self._applied:
            entries = entries_of(rows)
            self.engine.use_accepted(Allowlist(entries))
            self._applied, self.applied = key, len(entries)
            _log.info("feedback: %d accepted allowlist entries applied", len(entries))
        return self.applied

    def _pass_verdicts(self) -> None:
        """Closed alerts' verdicts to the engine's online learners (``take_verdicts``), once each."""
        try:
            closed = self.log.closed_since(self.verdicts_since_ms)
        except Exception:  # noqa: BLE001 - the next poll tries again from the same point
            POLLS.inc(outcome="error")
            return
        verdicts = []
        for row in closed:
            try:
                evidence = json.loads(row["evidence"] or "{}")
            except ValueError:
                evidence = {}
            verdicts.append(({**row, "evidence": evidence if isinstance(evidence, dict) else {}}, row["verdict"]))
        if verdicts:
            self.engine.take_verdicts(verdicts)
            self.verdicts_since_ms = max(int(r["changed_ms"]) for r in closed)

    def start(self) -> "FeedbackPoller":
        self.poll()
        self._thread = threading.Thread(target=self._run, name="feedback-poller", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
