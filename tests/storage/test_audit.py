"""audited_read: every read is recorded, answered, refused or failed, before its result is handed back."""

from __future__ import annotations

import pytest

from finsa.storage.audit import AuditEntry, audited_read
from finsa.storage.backend import QueryResult
from finsa.storage.sqlguard import QueryRefused


class _Store:
    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    def audit(self, entry: AuditEntry) -> None:
        self.entries.append(entry)


def _entry() -> AuditEntry:
    return AuditEntry("bank-a", "institution", "panel", "alerts", {"audit_user": "ana"}, ["bank-a"])


def test_an_answered_read_is_recorded_with_its_row_count() -> None:
    store = _Store()
    result = audited_read(store, _entry(), lambda: QueryResult(["x"], [(1,), (2,), (3,)]))
    assert result.rows == [(1,), (2,), (3,)]
    [entry] = store.entries
    assert (entry.outcome, entry.rows, entry.error, entry.principal) == ("ok", 3, "", "bank-a")
    assert entry.elapsed_ms >= 0


@pytest.mark.parametrize("exc, outcome", [(QueryRefused("no table functions"), "refused"),
                                          (RuntimeError("connection reset"), "error")])
def test_a_refused_or_failed_read_is_recorded_and_raised(exc: Exception, outcome: str) -> None:
    store = _Store()

    def run() -> QueryResult:
        raise exc

    with pytest.raises(type(exc)):
        audited_read(store, _entry(), run)
    [entry] = store.entries
    assert (entry.outcome, entry.rows, entry.error) == (outcome, 0, str(exc))


def test_a_read_that_cannot_be_audited_is_not_answered() -> None:
    class Broken(_Store):
        def audit(self, entry: AuditEntry) -> None:
            raise OSError("audit_log unavailable")

    with pytest.raises(OSError):
        audited_read(Broken(), _entry(), lambda: QueryResult(["x"], [(1,)]))


def test_doctests() -> None:
    import doctest

    from finsa.storage import audit

    result = doctest.testmod(audit)
    assert result.failed == 0 and result.attempted > 0
