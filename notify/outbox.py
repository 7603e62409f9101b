"""The persistent outbox: every message stored before it is sent, marked once delivered.

A SQLite file (stdlib, one writer: the notifier's thread; WAL, synchronous=FULL). A message's
primary key is its stable id: offering the same message twice (a worker replaying its sector
picture after a restart) stores it once, and a message already sent is never sent again.
Retries back off exponentially per message; after ``max_attempts`` a message is marked failed
(kept for the operator, counted).

>>> import tempfile, pathlib
>>> box = Outbox(pathlib.Path(tempfile.mkdtemp()) / "o.sqlite")
>>> box.add("m1", "soc", "bank-a", b"{}"), box.add("m1", "soc", "bank-a", b"{}")
(True, False)
>>> [m.id for m in box.due(now_s=0.0)]
['m1']
>>> box.sent("m1"); box.due(now_s=10**10), box.counts()
([], {'sent': 1})
>>> box.close()
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Outbox", "Pending"]

_SCHEMA = """CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY, receiver TEXT NOT NULL, institution TEXT NOT NULL, payload BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    next_s REAL NOT NULL DEFAULT 0, created_s REAL NOT NULL, sent_s REAL, error TEXT NOT NULL DEFAULT '')"""


@dataclass(frozen=True)
class Pending:
    id: str
    receiver: str
    institution: str
    payload: bytes
    attempts: int


class Outbox:
    """The queue on disk (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
            self._db.execute("CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_s)")

    def add(self, mid: str, receiver: str, institution: str, payload: bytes) -> bool:
        """Store a message; False when its id is already there (pending, sent or failed)."""
        with self._lock:
            cur = self._db.execute("INSERT OR IGNORE INTO outbox (id, receiver, institution, payload, created_s) "
                                   "VALUES (?, ?, ?, ?, ?)", (mid, receiver, institution, payload, time.time()))
            return cur.rowcount == 1

    def due(self, now_s: float | None = None, limit: int = 100) -> list[Pending]:
        now_s = time.time() if now_s is None else now_s
        with self._lock:
            rows = self._db.execute("SELECT id, receiver, institution, payload, attempts FROM outbox "
                                    "WHERE state = 'pending' AND next_s <= ? ORDER BY created_s LIMIT ?",
                                    (now_s, limit)).fetchall()
        return [Pending(*row) for row in rows]

    def sent(self, mid: str) -> None:
        with self._lock:
            self._db.execute("UPDATE outbox SET state = 'sent', sent_s = ?, error = '' WHERE id = ?", (time.time(), mid))

    def failed(self, mid: str, error: str, retry_s: float, max_retry_s: float, max_attempts: int) -> bool:
        """Record a failed attempt; True when the message gave up (attempts exhausted)."""
        with self._lock:
            (attempts,) = self._db.execute("SELECT attempts + 1 FROM outbox WHERE id = ?", (mid,)).fetchone()
            done = attempts >= max_attempts
            delay = min(max_retry_s, retry_s * 2 ** (attempts - 1))
            self._db.execute("UPDATE outbox SET attempts = ?, next_s = ?, error = ?, state = ? WHERE id = ?",
                             (attempts, time.time() + delay, error[:500], "failed" if done else "pending", mid))
            return done

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())

    def close(self) -> None:
        with self._lock:
            self._db.close()
