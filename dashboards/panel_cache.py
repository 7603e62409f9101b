"""A result cache for dashboard panels on the embedded store (one chdb session, one query at a time).

Ten analysts refreshing the same panels ask the store the same questions. :class:`PanelCache`
sits in front of :class:`~finsa.dashboards.reads.PanelReads` (same ``read(user, panel, params)``)
and keeps each result under a key of:

* who reads it (role and institution: tenancy is never shared between principals),
* the panel id and its parameters, with ``from_ms`` / ``to_ms`` cut to ``bucket_ms`` time
  buckets (a page asking "the last hour" a few seconds later gets the same answer; a result is
  at most one bucket behind the clock),
* the data version of the tables the panel's SQL names (active parts, rows and last
  modification of each in ``system.parts``, read at most every ``check_s`` for all users): a
  new insert, merge or roll-up write in any of those tables invalidates the entry.

Concurrent misses of one key wait for the first one's query instead of queueing the same query
behind the store's lock (single flight). Every read stays audited: a hit appends the same
audit row a miss would (action ``panel``, with the reached institutions), then answers from
memory. The cache holds at most ``max_entries`` results (least recently used dropped first).

A hit never waits for the store's lock (the embedded store runs one query at a time, and a
panel query at 100M flows holds it for hundreds of ms): its audit row goes to an
:class:`~finsa.storage.audit_queue.AuditQueue` (written in batches within ``audit_flush_s``;
:meth:`PanelCache.close` writes the rest), and the table versions are refreshed by a background
thread while hits use the last ones (so an entry may be served up to ``check_s`` plus one query's
time after new data landed). Only the very first read, with no versions yet, reads them itself.

>>> PanelCache.bucketed({"from_ms": 1_000_123, "to_ms": 4_600_999, "institution": ""}, 10_000)
(('from_ms', 100), ('institution', ''), ('to_ms', 460))
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

from finsa.dashboards.panels import Panel
from finsa.dashboards.reads import AUDIT_USER, PanelReads
from finsa.dashboards.users import User
from finsa.metrics import REGISTRY
from finsa.storage.audit import AuditEntry, audited_read, institutions_named
from finsa.storage.audit_queue import AuditQueue
from finsa.storage.backend import QueryResult

__all__ = ["PanelCache", "tables_named"]

LOOKUPS = REGISTRY.counter("finsa_panel_cache_lookups_total", "Panel reads by cache outcome", ["outcome"])
VERSION_ERRORS = REGISTRY.counter("finsa_panel_cache_version_errors_total",
                                  "Table-version checks of the panel cache that failed")
_TABLE = re.compile(r"\b(?:FROM|JOIN)\s+([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)
_TIME_PARAMS = ("from_ms", "to_ms")


def tables_named(sql: str) -> tuple[str, ...]:
    """Tables (or views) a statement reads, from its FROM and JOIN clauses.

    >>> tables_named("SELECT x FROM flows_1m JOIN institutions i ON 1 WHERE y IN (SELECT z FROM alerts)")
    ('alerts', 'flows_1m', 'institutions')
    """
    return tuple(sorted({name for name in _TABLE.findall(sql) if name.lower() not in ("select", "numbers")}))


class PanelCache:
    """Cached panel reads for users (see the module docstring)."""

    def __init__(self, reads: PanelReads, bucket_ms: int = 10_000, check_s: float = 1.0, max_entries: int = 1024,
                 clock: Callable[[], float] = time.monotonic, audit_flush_s: float = 0.5) -> None:
        if bucket_ms < 1 or check_s < 0 or max_entries < 1:
            raise ValueError("bucket_ms and max_entries must be >= 1, check_s >= 0")
        self.reads, self.store = reads, reads.store
        self.audit = AuditQueue(reads.store, flush_s=audit_flush_s)
        self.bucket_ms, self.check_s, self.max_entries, self._clock = bucket_ms, check_s, max_entries, clock
        self._entries: OrderedDict[tuple, tuple[tuple, QueryResult]] = OrderedDict()
        self._flights: dict[tuple, threading.Event] = {}
        self._lock = threading.Lock()
        self._versions: dict[str, tuple] = {}
        self._known: tuple[str, ...] = ()
        self._checked = float("-inf")
        self._version_lock = threading.Lock()
        #: ``last.outcome`` is this thread's last read: "hit" (from memory), "joined" (waited for another
        #: reader's query of the same key, then from memory) or "miss" (its own query)
        self.last = threading.local()

    @staticmethod
    def bucketed(params: dict[str, Any], bucket_ms: int) -> tuple:
        """The parameters as a key: times cut to their bucket, the audit user left out."""
        return tuple(sorted((k, v // bucket_ms if k in _TIME_PARAMS else v)
                            for k, v in params.items() if k != AUDIT_USER))

    def read(self, user: User, panel: Panel, params: dict[str, Any]) -> QueryResult:
        """The panel's result for ``user``: from the cache when its tables did not change."""
        key = (user.role, user.institution, panel.id, self.bucketed(params, self.bucket_ms))
        waited = False
        while True:
            version = self._version_of(panel)
            with self._lock:
                found = self._entries.get(key)
                if found is not None and found[0] == version:
                    self._entries.move_to_end(key)
                    LOOKUPS.inc(outcome="hit")
                    self.last.outcome = "joined" if waited else "hit"
                    return self._audited_hit(user, panel, params, found[1])
                flight = self._flights.get(key)
                if flight is None:
                    flight = self._flights[key] = threading.Event()
                    break
            LOOKUPS.inc(outcome="joined")
            waited = True
            flight.wait(30.0)  # then look again: the first reader's result (or run it ourselves)
        self.last.outcome = "miss"
        try:
            LOOKUPS.inc(outcome="miss")
            result = self.reads.read(user, panel, params)  # Forbidden and store errors propagate
            with self._lock:
                self._entries[key] = (version, result)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            return result
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.set()

    def _audited_hit(self, user: User, panel: Panel, params: dict[str, Any], result: QueryResult) -> QueryResult:
        audited = {**params, AUDIT_USER: user.username}
        if user.role == "institution":
            entry = AuditEntry(user.institution, "institution", "panel", panel.id, audited, [user.institution])
        else:
            entry = AuditEntry(user.role, user.role, "panel", panel.id, audited,
                               sorted(institutions_named(panel.sql, audited, self._known)))
        return audited_read(self.audit, entry, lambda: result)

    def _version_of(self, panel: Panel) -> tuple:
        versions = self._table_versions()
        return tuple(versions.get(name) for name in tables_named(panel.sql))

    def _table_versions(self) -> dict[str, tuple]:
        """(active parts, rows, last modification) per table, refreshed at most every ``check_s``.

        With no versions yet (or ``check_s`` 0) the reader reads them (one reader at a time). Later,
        a stale set is refreshed by a background thread and readers use the last one meanwhile,
        so a hit never queues behind a panel query for its version check.
        """
        if self._clock() - self._checked < self.check_s:
            return self._versions
        if not self._versions or self.check_s == 0:  # check_s 0: every read sees the latest versions
            self._refresh_versions(blocking=True)
        elif self._version_lock.acquire(blocking=False):
            self._version_lock.release()
            threading.Thread(target=self._refresh_versions, name="finsa-panel-cache-versions", daemon=True).start()
        return self._versions

    def _refresh_versions(self, blocking: bool = False) -> None:
        if not self._version_lock.acquire(blocking=blocking):
            return
        try:
            if self._clock() - self._checked >= self.check_s:
                rows = self.store.query(
                    "SELECT table, count(), sum(rows), max(modification_time) FROM system.parts "
                    "WHERE database = currentDatabase() AND active GROUP BY table").rows
                versions = {str(r[0]): tuple(r[1:]) for r in rows}
                if "institutions" in versions and versions["institutions"] != self._known_version:
                    self._known = tuple(str(r[0]) for r in self.store.query("SELECT id FROM institutions").rows)
                    self._known_version = versions["institutions"]
                self._versions, self._checked = versions, self._clock()
        except Exception:  # counted; a background refresh that fails keeps the last versions
            VERSION_ERRORS.inc()
            if blocking:
                raise
        finally:
            self._version_lock.release()

    _known_version: tuple | None = None

    def close(self) -> None:
        """Write the queued audit rows of hits (call before closing the store)."""
        self.audit.close()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
