"""The store on a ClickHouse server, through clickhouse-connect over HTTP.

``url`` is ``http[s]://user:password@host:port`` (port 8123 by default, 8443 for https). The
database is created when missing and made the client's default, so user SQL names tables
without a prefix. Inserts send the same Native payload as the chdb backend (``raw_insert``),
with the deduplication token as a per-insert setting. One lock serialises the calls: a
ClickHouse HTTP session refuses concurrent queries.

>>> parse_url("http://finsa:s3cret@db.example:8123")
('http', 'db.example', 8123, 'finsa', 's3cret')
"""

from __future__ import annotations

from typing import Any, Sequence
from urllib.parse import unquote, urlsplit

from finsa.errors import StorageError

from finsa.storage.backend import QueryResult, Store
from finsa.storage.native import Chunk


def parse_url(url: str) -> tuple[str, str, int, str, str]:
    """(scheme, host, port, user, password) of a ClickHouse HTTP URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StorageError(f"not a ClickHouse HTTP URL (http://user:pass@host:8123): {url!r}")
    port = parts.port or (8443 if parts.scheme == "https" else 8123)
    return (parts.scheme, parts.hostname, port, unquote(parts.username or "default"),
            unquote(parts.password or ""))


class ServerStore(Store):
    """A :class:`~finsa.storage.backend.Store` on a ClickHouse server."""

    def __init__(self, url: str, database: str = "finsa", connect_timeout_s: int = 10) -> None:
        super().__init__(database)
        import clickhouse_connect

        scheme, host, port, user, password = parse_url(url)
        options: dict[str, Any] = dict(host=host, port=port, username=user, password=password,
                                       secure=scheme == "https", connect_timeout=connect_timeout_s,
                                       compress=False, autogenerate_session_id=False)
        try:
            admin = clickhouse_connect.get_client(**options)
            admin.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
            admin.close()
            self._client: Any = clickhouse_connect.get_client(database=self.database, **options)
        except Exception as exc:  # connection refused, bad credentials ...
            raise StorageError(f"cannot reach ClickHouse at {scheme}://{host}:{port}: {exc}") from exc
        self.url = f"{scheme}://{host}:{port}"

    def _run_query(self, sql: str, parameters: dict | None) -> QueryResult:
        result = self._client.query(sql, parameters=parameters or None)
        return QueryResult(list(result.column_names), [tuple(r) for r in result.result_rows])

    def _run_command(self, sql: str) -> str:
        out = self._client.command(sql)
        if isinstance(out, (list, tuple)):
            return "\t".join(str(v) for v in out)
        return "" if out is None or not isinstance(out, (str, int, float)) else str(out)

    def _insert_bytes(self, table: str, names: list[str], payload: bytes | Sequence[Chunk], fmt: str,
                      settings: dict[str, str]) -> None:
        body = payload if isinstance(payload, bytes) else b"".join(payload)  # one request body: a retry resends it
        self._client.raw_insert(table, names or None, body, settings=settings or None, fmt=fmt)

    def _use_database(self, database: str) -> None:
        self._client.database = database

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
