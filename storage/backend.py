"""One storage interface, two backends: chdb in process or a ClickHouse server.

:func:`open_store` picks the backend: ``data_dir`` opens the ClickHouse engine in process
(chdb, persistent in that folder; one process at a time), ``url`` talks to a server through
clickhouse-connect (``http://user:pass@host:8123``). Both expose the same :class:`Store`:

* ``migrate()`` creates or upgrades the tables (see :mod:`finsa.storage.migrations`);
* ``insert(batch)`` writes a wire batch, idempotent per ``batch.batch_id``: a batch already
  written is skipped (``False``). Two guards: the ``ingested_batches`` ledger, consulted first,
  and ClickHouse's insert deduplication token (table setting
  ``non_replicated_deduplication_window``), which also covers a crash between the data write and
  the ledger write, and keeps the ``flows_1m`` roll-up free of the repeat;
* ``query(sql, parameters)`` returns a :class:`QueryResult`; parameters use ClickHouse's
  server-side binding ``{name:Type}``; table names need no database prefix;
* every method is thread-safe (one lock per store).

>>> store = open_store()                               # chdb, in memory
>>> store.migrate()[:2]
['0001_create_schema_migrations', '0002_create_flows']
>>> store.query("SELECT count() FROM flows").rows
[(0,)]
>>> store.close()
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import re
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, Sequence

from finsa.errors import StorageError
from finsa.metrics import REGISTRY
from finsa.wire import FLOW, RecordBatch

from finsa.storage.key_order import flows_sorted_block
from finsa.storage.native import Chunk, native_chunks_of
from finsa.storage.schema import INSTITUTION_COLUMNS, TABLE_OF_RECORD

ROWS_WRITTEN = REGISTRY.counter("finsa_storage_rows_total", "Rows written to the store", ["table"])
BATCHES = REGISTRY.counter("finsa_storage_batches_total", "Batches offered to the store", ["table", "outcome"])
ERRORS = REGISTRY.counter("finsa_storage_errors_total", "Store operations that failed", ["operation"])

#: Per-table insert settings. Flows: the roll-up views GROUP BY their tables' full sort keys,
#: so a view's block has one row per key already and the Summing "merge on insert" re-sorts it
#: for nothing (it cost a fifth of the insert's CPU); readers sum() GROUP BY anyway.
_INSERT_SETTINGS = {"flows": {"optimize_on_insert": "0"}}

_SELECT = re.compile(r"^\s*(\(\s*)*(SELECT|WITH)\b", re.IGNORECASE)
_FORMAT = re.compile(r"\bFORMAT\s+\w+\s*;?\s*$", re.IGNORECASE)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def check_identifier(name: str) -> str:
    """A database or table name safe to paste into SQL, or StorageError."""
    if not _IDENTIFIER.match(name):
        raise StorageError(f"not a valid ClickHouse identifier: {name!r}")
    return name


def _plain(value: Any) -> Any:
    if isinstance(value, ipaddress.IPv6Address) and value.ipv4_mapped is not None:
        return str(value.ipv4_mapped)
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    return value


@dataclass
class QueryResult:
    """Column names and rows of a query; addresses come back as text (IPv4 dotted)."""

    columns: list[str]
    rows: list[tuple] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.rows and any(isinstance(v, (ipaddress.IPv4Address, ipaddress.IPv6Address)) for v in self.rows[0]):
            self.rows = [tuple(_plain(v) for v in row) for row in self.rows]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


class BatchStore(Protocol):
    """What a writer of wire batches needs from a store: :class:`Store` is one; tests pass fakes.

    The stream worker (:mod:`finsa.streams.processor`) and the sector stage type their store with
    it, so they depend on two methods, not on a backend.
    """

    def insert(self, batch: RecordBatch) -> bool:
        """Write a batch; False when its batch id was already written."""
        ...

    def insert_many(self, batches: Sequence[RecordBatch]) -> int:
        """Write batches of one record type; returns how many were new."""
        ...


class Store(ABC):
    """The storage interface (see the module docstring). Subclasses provide four primitives."""

    def __init__(self, database: str = "finsa") -> None:
        self.database = check_identifier(database)
        self._lock = threading.RLock()

    # --- primitives a backend implements (called with the lock held) --------------------
    @abstractmethod
    def _run_query(self, sql: str, parameters: dict | None) -> QueryResult: ...

    @abstractmethod
    def _run_command(self, sql: str) -> str: ...

    @abstractmethod
    def _insert_bytes(self, table: str, names: list[str], payload: bytes | Sequence[Chunk], fmt: str,
                      settings: dict[str, str]) -> None:
        """Insert ``payload`` (the bytes, or consecutive chunks of them) in format ``fmt``."""

    @abstractmethod
    def _close(self) -> None: ...

    @abstractmethod
    def _use_database(self, database: str) -> None:
        """Make ``database`` the one unqualified names resolve in (lock held)."""

    # --- the interface ------------------------------------------------------------------
    def query(self, sql: str, parameters: dict | None = None) -> QueryResult:
        if _FORMAT.search(sql):
            raise StorageError("query() returns rows: leave out the FORMAT clause")
        with self._lock:
            result = self._guarded("query", self._run_query, sql, parameters)
            if not result.columns and _SELECT.match(sql):
                result = QueryResult(self._header(sql, parameters), [])
            return result

    def query_in(self, database: str, sql: str, parameters: dict | None = None) -> QueryResult:
        """:meth:`query` with ``database`` current (unqualified names resolve there)."""
        with self._lock:
            self._guarded("query", self._use_database, database)
            try:
                return self.query(sql, parameters)
            finally:
                self._guarded("query", self._use_database, self.database)

    def audit(self, entry: Any) -> None:
        """Append one :class:`~finsa.storage.audit.AuditEntry` to ``audit_log``."""
        self.audit_many([entry])

    def audit_many(self, entries: Sequence[Any]) -> None:
        """Append audit entries to ``audit_log`` in one write (:class:`~finsa.storage.audit_queue.AuditQueue`)."""
        from finsa.storage.audit import AUDIT_ROWS

        if not entries:
            return
        body = "".join(e.json_row() + "\n" for e in entries).encode()
        with self._lock:
            self._guarded("audit", self._insert_bytes, "audit_log", [], body, "JSONEachRow", {})
        for e in entries:
            AUDIT_ROWS.inc(outcome=e.outcome)

    def write_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Append rows (dicts of column -> value) to a sector table (campaigns, warnings, threat_levels,
        emergencies); prefer ``insert(batch)`` with their wire records, which is idempotent."""
        from finsa.storage.sector_schema import SECTOR_FIELDS

        if table not in SECTOR_FIELDS:
            raise StorageError(f"write_rows writes {sorted(SECTOR_FIELDS)}, not {table!r}")
        names = [f.name for f in SECTOR_FIELDS[table]]
        unknown = sorted({k for r in rows for k in r} - set(names))
        if unknown:
            raise StorageError(f"{table}: unknown column(s) {', '.join(unknown)}")
        body = "".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in rows)
        if rows:
            with self._lock:
                self._guarded("insert", self._insert_bytes, table, [], body.encode(), "JSONEachRow", {})
            ROWS_WRITTEN.inc(len(rows), table=table)
        return len(rows)

    def load_ip_enrichment(self, ranges: Iterable[tuple[str, str, int, str]]) -> int:
        """Replace ``ip_enrichment`` with (network CIDR, country, asn, as_name) rows and reload
        its dictionary; returns the count. Roll-ups use it for alerts inserted from now on."""
        lines = [json.dumps({"network": str(ipaddress.ip_network(net, strict=False)), "country": country,
                             "asn": int(asn), "as_name": name}) for net, country, asn, name in ranges]
        with self._lock:
            self._guarded("load_ip_enrichment", self._run_command, "TRUNCATE TABLE ip_enrichment")
            if lines:
                self._guarded("load_ip_enrichment", self._insert_bytes, "ip_enrichment", [],
                              ("\n".join(lines) + "\n").encode(), "JSONEachRow", {})
            self._guarded("load_ip_enrichment", self._run_command,
                          f"SYSTEM RELOAD DICTIONARY {self.database}.ip_enrichment_dict")
        return len(lines)

    def _header(self, sql: str, parameters: dict | None) -> list[str]:
        """Column names of a query that returned no block (Native sends none for 0 rows)."""
        try:
            described = self._run_query(f"DESCRIBE ({sql.strip().rstrip(';')})", parameters)
        except Exception:  # noqa: BLE001 - a query DESCRIBE cannot wrap (FORMAT clause ...): no names
            return []
        return [row[0] for row in described.rows]

    def command(self, sql: str) -> str:
        with self._lock:
            return self._guarded("command", self._run_command, sql)

    def migrate(self, ttl_days: Mapping[str, int] | None = None) -> list[str]:
        """Apply the migration steps this store lacks; returns the names of those applied.

        ``ttl_days`` ({"flows": 30, ...}) applies to tables created by this run only.
        """
        return self.migrate_report(ttl_days).applied

    def migrate_report(self, ttl_days: Mapping[str, int] | None = None) -> Any:
        """Like :meth:`migrate`, returning a MigrationReport (steps applied and skipped)."""
        from finsa.storage.migrations import run_migrations

        with self._lock:
            return self._guarded("migrate", run_migrations, self, ttl_days)

    def insert(self, batch: RecordBatch) -> bool:
        """Write a wire batch; False when this batch id was already written (nothing done)."""
        return self.insert_many([batch]) == 1

    def insert_many(self, batches: Sequence[RecordBatch]) -> int:
        """Write several batches of one record type in one write; returns how many were new.

        Idempotent per batch id, like :meth:`insert`: the ledger is asked about every id at once,
        the batches it does not know are concatenated into one block (one part, one round trip:
        a MergeTree write costs a fixed few tens of ms, whatever its size), inserted under a
        deduplication token made of their ids, and then recorded in the ledger.
        """
        if not batches:
            return 0
        record = batches[0].type.name
        if any(b.type.name != record for b in batches):
            raise StorageError("insert_many takes batches of one record type")
        table = TABLE_OF_RECORD[record]
        with self._lock:
            seen = self._seen_batches(record, [b.batch_id for b in batches])
            if record == FLOW.name:
                stored = self._stored_flow_batches([b for b in batches if b.batch_id not in seen])
                if stored:  # stored but not recorded (a worker killed between the two writes)
                    self._record(record, [b for b in batches if b.batch_id in stored])
                seen |= stored
            fresh, ids = [], set()
            for b in batches:
                if b.batch_id in seen or b.batch_id in ids:
                    BATCHES.inc(table=table, outcome="duplicate")
                    continue
                ids.add(b.batch_id)
                fresh.append(b)
            if not fresh:
                return 0
            rows = sum(len(b) for b in fresh)
            if rows:
                names, payload = (flows_sorted_block(fresh) if table == "flows"
                                  else native_chunks_of(fresh))  # flows: in the table's key order (no engine sort)
                token = hashlib.blake2b(b"".join(sorted(ids)), digest_size=16).hexdigest()
                settings = {"insert_deduplication_token": f"{table}-{token}",
                            "deduplicate_blocks_in_dependent_materialized_views": "1", **_INSERT_SETTINGS.get(table, {})}
                self._guarded("insert", self._insert_bytes, table, names, payload, "Native", settings)
            self._record(record, fresh)
        ROWS_WRITTEN.inc(rows, table=table)
        BATCHES.inc(len(fresh), table=table, outcome="written")
        return len(fresh)

    def _record(self, record: str, batches: Sequence[RecordBatch]) -> None:
        """Add batches to the ledger (lock held)."""
        unique = {b.batch_id: len(b) for b in batches}
        values = ", ".join(f"(unhex('{i.hex()}'), '{record}', {n})" for i, n in unique.items())
        self._guarded("insert", self._run_command, f"INSERT INTO ingested_batches (batch_id, record, rows) VALUES {values}")

    def _stored_flow_batches(self, batches: Sequence[RecordBatch]) -> set[bytes]:
        """Batch ids among ``batches`` whose flows are in the table though the ledger lacks them.

        The ledger row is written after the flows; a worker killed between the two gets the
        group again after its restart, possibly grouped with other batches (then the block's
        deduplication token differs). Asking the table itself, bounded to the batches' time
        range (the key's minute prunes it to a few granules per institution), closes that gap.
        """
        batches = [b for b in batches if len(b)]
        if not batches:
            return set()
        lo = min(int(b.columns["first_seen_ms"].min()) for b in batches)
        hi = max(int(b.columns["first_seen_ms"].max()) for b in batches)
        id_list = ", ".join(f"unhex('{b.batch_id.hex()}')" for b in batches)
        found = self._guarded("insert", self._run_query,
                              f"SELECT DISTINCT hex(batch_id) FROM flows WHERE first_seen_ms BETWEEN {lo} AND {hi} "
                              f"AND batch_id IN ({id_list})", None)
        return {bytes.fromhex(row[0]) for row in found.rows}

    def _seen_batches(self, record: str, batch_ids: list[bytes]) -> set[bytes]:
        id_list = ", ".join(f"unhex('{i.hex()}')" for i in batch_ids)
        found = self._guarded("insert", self._run_query,
                              f"SELECT hex(batch_id) FROM ingested_batches WHERE record = '{record}' "
                              f"AND batch_id IN ({id_list})", None)
        return {bytes.fromhex(row[0]) for row in found.rows}

    def load_institutions(self, registry: Any) -> int:
        """Replace the ``institutions`` table with the registry's institutions; returns the count."""
        names = [c.name for c in INSTITUTION_COLUMNS]
        lines = [json.dumps({n: getattr(inst, n) for n in names}) for inst in registry.institution]
        with self._lock:
            self._guarded("load_institutions", self._run_command, "TRUNCATE TABLE IF EXISTS institutions")
            if lines:
                self._guarded("load_institutions", self._insert_bytes, "institutions", names,
                              ("\n".join(lines) + "\n").encode(), "JSONEachRow", {})
        return len(lines)

    def release_memory(self) -> bool:
        """Hand memory the engine freed back to the system; False where the engine is not in this
        process (a ClickHouse server manages its own). See :meth:`ChdbStore.release_memory`."""
        return False

    def close(self) -> None:
        with self._lock:
            self._close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _guarded(self, operation: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except StorageError:
            ERRORS.inc(operation=operation)
            raise
        except Exception as exc:  # any engine or transport error becomes a StorageError
            ERRORS.inc(operation=operation)
            raise StorageError(str(exc).strip()) from exc


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line flags naming a store (:func:`open_store`'s), shared by the storage
    commands (``finsa query``, ``finsa allowlist``), which never import one another:
    ``--data-dir`` / ``--clickhouse-url`` (one of them) and ``--database``.

    >>> parser = argparse.ArgumentParser()
    >>> add_store_arguments(parser)
    >>> args = parser.parse_args(["--data-dir", "data/run"])
    >>> args.data_dir, args.clickhouse_url, args.database
    ('data/run', None, 'finsa')
    """
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-dir", help="folder of the store in process (chdb)")
    where.add_argument("--clickhouse-url", help="ClickHouse server, http://user:pass@host:8123")
    parser.add_argument("--database", default="finsa", help="database name (default: finsa)")


def open_store(data_dir: str | Path | None = None, url: str | None = None, database: str = "finsa") -> Store:
    """Open a store: ``url`` -> ClickHouse server, else chdb in ``data_dir`` (None: in memory)."""
    if url is not None and data_dir is not None:
        raise StorageError("give either a data directory or a ClickHouse URL, not both")
    if url is not None:
        from finsa.storage.server_backend import ServerStore

        return ServerStore(url, database)
    from finsa.storage.chdb_backend import ChdbStore

    return ChdbStore(data_dir, database)
