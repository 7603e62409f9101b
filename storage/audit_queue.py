"""Audit rows written off the request path: queued in memory, appended in batches by one thread.

:meth:`Store.audit <finsa.storage.backend.Store.audit>` writes one row under the store's lock,
so a read answered from memory (a panel cache hit) still waited behind whatever query held the
embedded store (at 2M flows a hit's p95 was 382-439 ms, nearly all of it that wait).
:class:`AuditQueue` has the same ``audit(entry)`` method, so :func:`~finsa.storage.audit.audited_read`
takes it in the store's place: the entry is queued (no store lock, no I/O) and a writer thread
appends every queued entry in one insert each ``flush_s`` (:meth:`Store.audit_many`).

What this trades, stated plainly: a row is durable up to ``flush_s`` after its read was answered
(a crash in between loses those rows, a graceful :meth:`close` writes them). A read is still
never answered without its row being accepted: when the store cannot take the rows and
``max_pending`` of them are waiting, :meth:`audit` raises :class:`~finsa.errors.StorageError`
and the read fails, as a failed synchronous write would.

>>> from finsa.storage.backend import open_store
>>> from finsa.storage.audit import AuditEntry, audited_read
>>> store = open_store(); _ = store.migrate()
>>> queue = AuditQueue(store, flush_s=60.0)
>>> audited_read(queue, AuditEntry("bank-a", "institution", "panel", "p1"), lambda: store.query("SELECT 1")).rows
[(1,)]
>>> queue.pending, store.query("SELECT count() FROM audit_log").rows
(1, [(0,)])
>>> queue.close(); store.query("SELECT principal, statement FROM audit_log").rows
[('bank-a', 'p1')]
>>> store.close()
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from finsa.errors import StorageError
from finsa.metrics import REGISTRY

__all__ = ["AuditQueue"]

FLUSHES = REGISTRY.counter("finsa_storage_audit_flushes_total", "Batched audit writes by outcome", ["outcome"])


class AuditQueue:
    """Queued audit rows for ``store`` (see the module docstring)."""

    def __init__(self, store: Any, flush_s: float = 0.5, max_pending: int = 50_000) -> None:
        if not flush_s > 0 or max_pending < 1:
            raise ValueError("flush_s must be positive and max_pending >= 1")
        self.store, self.flush_s, self.max_pending = store, flush_s, max_pending
        self._pending: deque[Any] = deque()
        self._cond = threading.Condition()
        self._writing = threading.Lock()  # one writer at a time: the thread, or flush()/close()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="finsa-audit-queue", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Rows accepted and not yet written."""
        with self._cond:
            return len(self._pending)

    def audit(self, entry: Any) -> None:
        """Accept one :class:`~finsa.storage.audit.AuditEntry` (written within ``flush_s``)."""
        with self._cond:
            if self._closed:
                raise StorageError("audit queue closed: the read is not answered")
            if len(self._pending) >= self.max_pending:
                raise StorageError(f"audit log behind: {len(self._pending)} rows not written; the read is not answered")
            self._pending.append(entry)

    def flush(self) -> None:
        """Write every accepted row now (raises the store's error; the rows stay queued then)."""
        with self._writing:
            with self._cond:
                batch = list(self._pending)
            if not batch:
                return
            try:
                self.store.audit_many(batch)
            except Exception:
                FLUSHES.inc(outcome="error")
                raise
            with self._cond:
                for _ in batch:
                    self._pending.popleft()
            FLUSHES.inc(outcome="ok")

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait(self.flush_s)
                if self._closed:
                    return
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - counted in FLUSHES; the rows stay queued, retried next round
                continue

    def close(self) -> None:
        """Stop the writer thread and write what is queued (the store must still be open)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10.0)
        self.flush()
