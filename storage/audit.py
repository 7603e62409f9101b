"""The audit trail: every read and export a user makes through finsa, append-only.

One row per query, panel or export: who (``principal``), as what (``role``: operator, regulator
or institution), what (``action`` query|panel|export, ``statement``: the SQL or the panel id,
``parameters`` as JSON), when, how many rows came back, and whether it was refused or failed.
``institutions`` lists whose data the read could reach: the institution itself for an
institution's read; for the regulator and the operator, the institution ids named in the
statement or its parameters (so a regulator looking at one bank is recorded against that
bank), empty when the read spans the whole sector.

``audit_log`` is a plain MergeTree with no TTL; finsa never deletes from it (the guarded query
paths refuse any statement that names it other than a SELECT).

>>> sorted(institutions_named("SELECT * FROM flows WHERE institution_id = 'bank-b'", {}, {"bank-a", "bank-b"}))
['bank-b']

:func:`audited_read` is the one way a read path runs a query and records it (the tenant views,
the web view's sector aggregates): the entry is appended whether the read is answered, refused
or fails, and before the rows are handed back.

>>> from finsa.storage.backend import open_store
>>> store = open_store(); _ = store.migrate()
>>> entry = AuditEntry("bank-a", "institution", "panel", "alerts_by_hour")
>>> audited_read(store, entry, lambda: store.query("SELECT 1 UNION ALL SELECT 2")).rows
[(1,), (2,)]
>>> store.query("SELECT principal, action, statement, rows, outcome FROM audit_log").rows
[('bank-a', 'panel', 'alerts_by_hour', 2, 'ok')]
>>> store.close()
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, TypeVar

from finsa.metrics import REGISTRY
from finsa.storage.sqlguard import QueryRefused

AUDIT_ROWS = REGISTRY.counter("finsa_storage_audit_rows_total", "Reads recorded in the audit log", ["outcome"])

ROLES = ("operator", "regulator", "institution")
_Result = TypeVar("_Result")
_WORD = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def audit_log_ddl() -> str:
    # No TTL, no dedup window: two identical reads are two rows. Ordered by time for review.
    return """CREATE TABLE IF NOT EXISTS audit_log (
    time DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(DoubleDelta, ZSTD(1)) COMMENT 'When the read ran',
    principal String COMMENT 'Who: operator, regulator, or the institution id',
    role LowCardinality(String) COMMENT 'operator, regulator or institution',
    action LowCardinality(String) COMMENT 'query (ad-hoc SQL), panel (fixed SQL) or export',
    statement String COMMENT 'The SQL, or the panel id',
    parameters String COMMENT 'Query parameters as JSON',
    institutions Array(String) COMMENT 'Institutions whose data the read could reach ([] = all / none named)',
    rows UInt64 COMMENT 'Rows returned',
    outcome LowCardinality(String) COMMENT 'ok, refused or error',
    error String COMMENT 'Why it was refused or failed',
    elapsed_ms UInt32 COMMENT 'Time the read took'
) ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (time, principal)
COMMENT 'Append-only audit trail of reads and exports through finsa (no TTL)'"""


@dataclass
class AuditEntry:
    """One audit row (see the module docstring)."""

    principal: str
    role: str
    action: str
    statement: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    institutions: list[str] = field(default_factory=list)
    rows: int = 0
    outcome: str = "ok"
    error: str = ""
    elapsed_ms: int = 0
    time_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def json_row(self) -> str:
        return json.dumps({
            "time": _datetime_text(self.time_ms), "principal": self.principal, "role": self.role, "action": self.action,
            "statement": self.statement, "parameters": json.dumps(dict(self.parameters), default=str, sort_keys=True),
            "institutions": sorted(set(self.institutions)), "rows": int(self.rows), "outcome": self.outcome,
            "error": self.error[:2000], "elapsed_ms": max(0, min(int(self.elapsed_ms), 2**32 - 1)),
        }, ensure_ascii=False)


def _datetime_text(time_ms: int) -> str:
    moment = dt.datetime.fromtimestamp(time_ms / 1000, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{time_ms % 1000:03d}"


def institutions_named(statement: str, parameters: Mapping[str, Any], known: Iterable[str]) -> set[str]:
    """Known institution ids that appear as words in the statement or as parameter values."""
    known = set(known)
    words = set(_WORD.findall(statement.lower()))
    values = {str(v) for v in parameters.values()}
    return (words | values) & known


def audited_read(store: Any, entry: AuditEntry, run: Callable[[], _Result]) -> _Result:
    """``run()``'s result (anything with ``rows``), with ``entry`` appended to ``store``'s audit log
    first: outcome ok with the row count, ``refused`` on :class:`~finsa.storage.sqlguard.QueryRefused`,
    ``error`` on any other exception (re-raised), and the time the read took. A read that cannot
    be audited is not answered (the store's error propagates)."""
    started = time.monotonic()
    try:
        result = run()
    except Exception as exc:
        entry.outcome = "refused" if isinstance(exc, QueryRefused) else "error"
        entry.error = str(exc)
        raise
    else:
        entry.rows = len(result.rows)  # type: ignore[attr-defined]  # result of the query run just above
        return result
    finally:
        entry.elapsed_ms = int((time.monotonic() - started) * 1000)
        store.audit(entry)
