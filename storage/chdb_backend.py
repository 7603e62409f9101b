"""The store on the ClickHouse engine in process (chdb), persistent in a data directory.

chdb runs one engine per process and per path: open one store per process (``finsa query``
runs after ``finsa run`` has exited). The session's current database is the store's, so user
SQL names tables without a prefix. Every call takes the store's lock: the stream worker and
the web view may share one store from different threads.

Inserts push the Native payload through chdb's streaming insert (``send_insert``), which parses
it in the engine: no Python row objects. Results are read in Native format and decoded by
clickhouse-connect's own decoder, so both backends return the same Python types.

>>> store = ChdbStore(None)      # in memory
>>> store.query("SELECT 1 + {n:UInt8} AS x", {"n": 2}).dicts()
[{'x': 3}]
>>> store.close()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import chdb.session

from finsa.errors import StorageError

from finsa.storage.backend import QueryResult, Store
from finsa.storage.native import Chunk


class _BytesSource:
    """The minimal byte source clickhouse-connect's response buffer reads from."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.last_message = None
        self.exception_tag = None

    @property
    def gen(self):  # a generator of one chunk
        yield self.data

    def close(self) -> None:
        return None


def decode_native(data: bytes) -> tuple[list[str], list[tuple]]:
    """Column names and rows of a Native format result."""
    from clickhouse_connect.driver.ctypes import RespBuffCls
    from clickhouse_connect.driver.query import QueryContext
    from clickhouse_connect.driver.transform import NativeTransform

    parsed = NativeTransform.parse_response(RespBuffCls(_BytesSource(data)), QueryContext())
    return list(parsed.column_names), [tuple(r) for r in parsed.result_rows]  # type: ignore[union-attr]  # a QueryContext gives a QueryResult


def settings_clause(settings: dict[str, str]) -> str:
    """``SETTINGS a = 'x', b = 'y'`` for an INSERT (values quoted, names checked)."""
    from finsa.storage.backend import check_identifier

    parts = [f"{check_identifier(k)} = '{str(v).replace(chr(92), chr(92) * 2).replace(chr(39), chr(92) + chr(39))}'"
             for k, v in settings.items()]
    return f" SETTINGS {', '.join(parts)}" if parts else ""


class ChdbStore(Store):
    """A :class:`~finsa.storage.backend.Store` on chdb; ``data_dir`` None keeps data in memory."""

    def __init__(self, data_dir: str | Path | None, database: str = "finsa") -> None:
        super().__init__(database)
        self.data_dir = None if data_dir is None else Path(data_dir).resolve()
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._session: Any = chdb.session.Session(None if self.data_dir is None else str(self.data_dir))
            self._session.query(f"CREATE DATABASE IF NOT EXISTS {self.database}", "TSV")
            self._session.query(f"USE {self.database}", "TSV")
        except Exception as exc:  # e.g. another path already open in this process
            hint = (" (one process at a time may open a store folder: is `finsa run` still using it?)"
                    if self.data_dir is not None else "")
            raise StorageError(f"cannot open the chdb store at {self.data_dir or ':memory:'}: {exc}{hint}") from exc

    @property
    def session(self) -> Any:
        """The chdb session (for the HTTP endpoint); use it under :attr:`lock` only."""
        if self._session is None:
            raise StorageError("the store is closed")
        return self._session

    @property
    def lock(self) -> Any:
        return self._lock

    def _run_query(self, sql: str, parameters: dict | None) -> QueryResult:
        params = {k: _param_text(v) for k, v in (parameters or {}).items()}
        result = self.session.query(sql, "Native", params=params)
        data = result.bytes()
        if not data:  # chdb writes no block for an empty result; Store.query asks for the header
            return QueryResult([], [])
        names, rows = decode_native(data)
        return QueryResult(names, rows)

    def _run_command(self, sql: str) -> str:
        return str(self.session.query(sql, "TSV"))

    def _insert_bytes(self, table: str, names: list[str], payload: bytes | Sequence[Chunk], fmt: str,
                      settings: dict[str, str]) -> None:
        columns = f" ({', '.join(names)})" if names else ""
        statement = f"INSERT INTO {table}{columns}{settings_clause(settings)}"
        inserter = self.session.send_insert(statement, fmt)
        try:
            for chunk in [payload] if isinstance(payload, bytes) else payload:  # the engine parses a stream
                inserter.append(chunk)
        except Exception:
            inserter.cancel()
            raise
        inserter.finish()

    def release_memory(self) -> bool:
        """Purge the dirty pages of chdb's jemalloc (``SYSTEM JEMALLOC PURGE``): what an insert or
        a merge freed stays resident until jemalloc's decay (``dirty_decay_ms`` 5000 in chdb 4.4)
        returns it; a worker calls this after each store write so that its RSS follows the memory
        in use. About a millisecond when little is dirty.

        >>> store = ChdbStore(None)
        >>> store.release_memory()
        True
        >>> store.close()
        """
        with self._lock:
            self._guarded("command", self._run_command, "SYSTEM JEMALLOC PURGE")
        return True

    def _use_database(self, database: str) -> None:
        self.session.query(f"USE `{database}`", "TSV")

    def _close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


def _param_text(value: Any) -> str:
    """chdb binds parameters from text, like the HTTP interface's ``param_x=...``."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_array_item(v) for v in value) + "]"
    return str(value)


def _array_item(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)
