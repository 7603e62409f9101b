"""AuditQueue: audit rows accepted without the store's lock, written in batches, none lost on close,
and reads refused (not answered unaudited) when the store cannot take the rows."""

from __future__ import annotations

import threading

import pytest

from finsa.errors import StorageError
from finsa.storage.audit import AuditEntry, audited_read
from finsa.storage.audit_queue import AuditQueue
from finsa.storage.backend import QueryResult, open_store


def _entry(n: int) -> AuditEntry:
    return AuditEntry("bank-a", "institution", "panel", f"p{n}", {"audit_user": "ana"}, ["bank-a"])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = open_store(data_dir=str(tmp_path_factory.mktemp("audit-queue")))
    s.migrate()
    yield s
    s.close()


def _logged(store) -> list[str]:
    return [r[0] for r in store.query("SELECT statement FROM audit_log ORDER BY statement").rows]


def test_entries_are_accepted_while_the_store_is_busy_and_written_in_one_batch(store) -> None:
    store.command("TRUNCATE TABLE audit_log")
    queue = AuditQueue(store, flush_s=3600.0)  # only flush() and close() write here
    held, done = threading.Event(), threading.Event()

    def busy() -> None:
        with store._lock:  # a long panel query holding the embedded store
            held.set()
            done.wait(10.0)

    holder = threading.Thread(target=busy)
    holder.start()
    held.wait(10.0)
    answered = [audited_read(queue, _entry(n), lambda: QueryResult(["x"], [(1,)])).rows for n in range(3)]
    done.set()
    holder.join()
    assert answered == [[(1,)]] * 3 and queue.pending == 3 and _logged(store) == []
    queue.flush()
    assert queue.pending == 0 and _logged(store) == ["p0", "p1", "p2"]
    parts = store.query("SELECT count() FROM system.parts WHERE database = currentDatabase() "
                        "AND table = 'audit_log' AND active").rows[0][0]
    assert parts == 1  # one insert for the three rows
    queue.audit(_entry(3))
    queue.close()  # a graceful close writes what is queued
    assert _logged(store) == ["p0", "p1", "p2", "p3"]
    with pytest.raises(StorageError, match="closed"):
        queue.audit(_entry(4))


class _Failing:
    def __init__(self) -> None:
        self.calls = 0

    def audit_many(self, entries) -> None:
        self.calls += 1
        raise StorageError("disk full")


def test_a_store_that_cannot_take_rows_keeps_them_and_refuses_reads_past_the_limit() -> None:
    failing = _Failing()
    queue = AuditQueue(failing, flush_s=3600.0, max_pending=2)
    queue.audit(_entry(0))
    queue.audit(_entry(1))
    with pytest.raises(StorageError, match="disk full"):
        queue.flush()
    assert queue.pending == 2  # nothing dropped
    with pytest.raises(StorageError, match="audit log behind"):
        audited_read(queue, _entry(2), lambda: QueryResult(["x"], [(1,)]))
    assert queue.pending == 2
    with pytest.raises(StorageError):
        queue.close()
