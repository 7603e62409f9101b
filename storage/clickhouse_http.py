"""A ClickHouse-compatible HTTP endpoint served from a chdb store.

Enough of the ClickHouse HTTP interface for clickhouse-connect (and curl, and Grafana's
ClickHouse data source in HTTP mode): ``GET/POST /`` with the ``query`` parameter and/or the SQL
in the body, ``INSERT ... FORMAT F`` with the data in the body, ``database`` and
``default_format`` parameters, ``param_<name>`` query parameters, any other parameter applied as
a setting (``insert_deduplication_token``, ``max_result_rows`` ...), the ``X-ClickHouse-*``
response headers, ``/ping``, and errors as HTTP 500 with ``Code: N. DB::Exception: ...`` and
``X-ClickHouse-Exception-Code``. No compression, sessions or progress headers.

It serves the store's own chdb session under the store's lock, so it is how a second process
(or the clickhouse-connect backend in tests) reaches a store that chdb lets one process open.

>>> from finsa.storage.chdb_backend import ChdbStore
>>> store = ChdbStore(None)
>>> endpoint = ClickHouseHTTPEndpoint(store).start()
>>> import urllib.request
>>> urllib.request.urlopen(endpoint.url + "/?query=SELECT%2040%2B2").read()
b'42\\n'
>>> endpoint.stop(); store.close()
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import socket
import threading
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from finsa.metrics import REGISTRY

from finsa.storage.chdb_backend import ChdbStore, settings_clause

REQUESTS = REGISTRY.counter("finsa_storage_http_requests_total", "Requests to the ClickHouse HTTP endpoint",
                            ["outcome"])

#: ``INSERT INTO t (cols) FORMAT F`` then one optional newline: the data follows (in the body).
_INSERT = re.compile(rb"^\s*(INSERT\s+INTO\s.+?)\s+FORMAT\s+(\w+)[ \t]*\r?\n?", re.IGNORECASE | re.DOTALL)
_CODE = re.compile(r"Code:\s*(\d+)")
#: URL parameters of the HTTP interface itself, never applied as settings.
TRANSPORT_PARAMS = frozenset({
    "query", "database", "default_format", "session_id", "session_timeout", "session_check", "query_id",
    "compress", "decompress", "enable_http_compression", "user", "password", "quota_key", "buffer_size",
    "wait_end_of_query", "send_progress_in_http_headers", "http_headers_progress_interval_ms",
    "cancel_http_readonly_queries_on_client_close", "client_protocol_version", "role",
})


class _QueryFailed(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _failure(exc: Exception) -> _QueryFailed:
    text = str(exc).strip()
    match = _CODE.search(text)
    if match is None:
        return _QueryFailed(f"Code: 1000. DB::Exception: {text}", 1000)
    return _QueryFailed(text[match.start():], int(match.group(1)))


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: with Nagle on, the body waited for the client's
    # delayed ACK of the headers (~40 ms on every request of a kept-alive connection).
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:  # no per-request logging
        return None

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        body = self._body()
        try:
            body = _decoded(body, self.headers.get("Content-Encoding", "").lower())
        except _QueryFailed as failed:
            self._error(failed)
            return
        if parts.path.rstrip("/") in ("/ping", "/replicas_status"):
            self._reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        principal = self.server.endpoint.authenticate(*self._given())
        if principal is None:
            self._error(_QueryFailed("Code: 516. DB::Exception: finsa: Authentication failed: password is "
                                     "incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)", 516))
            return
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        try:
            data, headers = self.server.endpoint.execute(params, body, principal)
        except _QueryFailed as failed:
            self._error(failed)
            return
        REQUESTS.inc(outcome="ok")
        self._reply(200, data, headers)

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():  # clickhouse-connect streams inserts
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _given(self) -> tuple[str, str]:
        """(user, password) from Basic auth, the X-ClickHouse-User/Key headers or the URL."""
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode("utf-8", "replace").partition(":")
            except ValueError:
                return ("", "")
            return (user, password)
        if self.headers.get("X-ClickHouse-User"):
            return (self.headers.get("X-ClickHouse-User", ""), self.headers.get("X-ClickHouse-Key", ""))
        params = dict(parse_qsl(urlsplit(self.path).query))
        return (params.get("user", ""), params.get("password", ""))

    def _error(self, failed: _QueryFailed) -> None:
        REQUESTS.inc(outcome="error")
        self._reply(500, (str(failed) + "\n").encode(), {
            "Content-Type": "text/plain; charset=UTF-8", "X-ClickHouse-Exception-Code": str(failed.code)})

    def _reply(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(data)),
                            "X-ClickHouse-Server-Display-Name": "finsa-chdb",
                            "X-ClickHouse-Timezone": "UTC"}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _decoded(body: bytes, encoding: str) -> bytes:
    """A request body without its Content-Encoding (gzip, deflate; lz4 when lz4 is installed)."""
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "deflate"):
        return zlib.decompress(body, 47 if encoding == "gzip" else 15)
    if encoding == "lz4":
        try:
            import lz4.frame  # clickhouse-connect's own dependency
        except ImportError:
            pass
        else:
            return lz4.frame.decompress(body)
    raise _QueryFailed(f"Code: 48. DB::Exception: finsa: Content-Encoding {encoding} is not supported; "
                       "use gzip, deflate, lz4 or none. (NOT_IMPLEMENTED)", 48)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    endpoint: "ClickHouseHTTPEndpoint"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set = set()  # open client sockets, closed on stop like a real server's

    def process_request(self, request, client_address) -> None:
        self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        for conn in list(self.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class ClickHouseHTTPEndpoint:
    """Serve ``store`` over the ClickHouse HTTP interface on ``host:port`` (0: a free port).

    ``credentials`` (user, password), when given, are required (Basic auth or the
    X-ClickHouse-User/Key headers); otherwise any user is accepted.
    """

    def __init__(self, store: ChdbStore, host: str = "127.0.0.1", port: int = 0,
                 credentials: tuple[str, str] | None = None) -> None:
        self.store, self.host, self.port, self.credentials = store, host, port, credentials
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "ClickHouseHTTPEndpoint":
        self._server = _Server((self.host, self.port), _Handler)
        self._server.endpoint = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="finsa-ch-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_connections()  # kept-alive clients see the server go, as with a real one
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def authenticate(self, user: str, password: str) -> str | None:
        """Whom the request runs for ("operator": this endpoint is the store's owner), or None."""
        if self.credentials is None:
            return "operator"
        return "operator" if hmac.compare_digest(f"{user}\0{password}".encode(),
                                                 "\0".join(self.credentials).encode()) else None

    def execute(self, params: dict[str, str], body: bytes, principal: str = "operator") -> tuple[bytes, dict[str, str]]:
        """Run one request; returns the response body and headers, or raises _QueryFailed."""
        query = params.get("query", "")
        settings = {k: v for k, v in params.items() if k not in TRANSPORT_PARAMS and not k.startswith("param_")}
        bind = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        fmt = params.get("default_format") or "TabSeparated"
        headers = {"X-ClickHouse-Query-Id": params.get("query_id") or str(uuid.uuid4()),
                   "X-ClickHouse-Format": fmt}
        # As in ClickHouse, the query parameter and the body together make the request.
        request = query.encode() + b"\n" + body if query and body else (query.encode() or body)
        insert = _INSERT.match(request)
        with self.store.lock:
            session = self.store.session
            database = params.get("database")
            try:
                if database and database != self.store.database:
                    session.query(f"USE {_identifier(database)}", "TSV")
                if insert:
                    statement, in_format = insert.group(1).decode(), insert.group(2).decode()
                    summary = self._insert(session, statement, in_format, request[insert.end():], settings)
                    return b"", {**headers, "X-ClickHouse-Summary": json.dumps(summary)}
                return self._select(session, request.decode("utf-8", "replace"), fmt, bind, settings, headers)
            except _QueryFailed:
                raise
            except Exception as exc:  # noqa: BLE001 - every engine error goes back to the client
                raise _failure(exc) from None
            finally:
                if database and database != self.store.database:
                    session.query(f"USE {self.store.database}", "TSV")

    @staticmethod
    def _insert(session: Any, statement: str, fmt: str, data: bytes, settings: dict[str, str]) -> dict:
        inserter = session.send_insert(statement + settings_clause(settings), fmt)
        try:
            inserter.append(data)
        except Exception:
            inserter.cancel()
            raise
        done = inserter.finish()
        return {"read_rows": "0", "read_bytes": "0", "written_rows": str(done.rows_written),
                "written_bytes": str(done.bytes_written), "total_rows_to_read": "0", "result_rows": "0",
                "result_bytes": "0", "elapsed_ns": str(int(done.elapsed * 1e9))}

    @staticmethod
    def _select(session: Any, sql: str, fmt: str, bind: dict[str, str], settings: dict[str, str],
                headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        clause = _settings_in_query(sql, settings)
        if clause is not None:
            result = session.query(clause, fmt, params=bind)
        else:  # DDL, SHOW, a query with its own SETTINGS: set for this request, then reset
            for name, value in settings.items():
                session.query(f"SET {_identifier(name)} = {_literal(value)}", "TSV")
            try:
                result = session.query(sql, fmt, params=bind)
            finally:
                for name in settings:
                    session.query(f"SET {_identifier(name)} = DEFAULT", "TSV")
        data = result.bytes()
        summary = {"read_rows": str(result.rows_read()), "read_bytes": str(result.bytes_read()),
                   "written_rows": "0", "written_bytes": "0", "total_rows_to_read": str(result.rows_read()),
                   "result_rows": str(result.rows_read()), "result_bytes": str(len(data)),
                   "elapsed_ns": str(int(result.elapsed() * 1e9))}
        trailing = _TRAILING_FORMAT.search(sql)
        shown = trailing.group(1) if trailing else fmt
        content_type = "application/octet-stream" if shown in _BINARY_FORMATS else "text/plain; charset=UTF-8"
        return data, {**headers, "X-ClickHouse-Summary": json.dumps(summary), "Content-Type": content_type,
                      "X-ClickHouse-Format": shown}


_SELECT = re.compile(r"^\s*(\(\s*)*(SELECT|WITH)\b", re.IGNORECASE)
_TRAILING_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_BINARY_FORMATS = ("Native", "RowBinary", "RowBinaryWithNames", "RowBinaryWithNamesAndTypes", "Arrow",
                   "ArrowStream", "Parquet", "ORC", "Avro")


def _settings_in_query(sql: str, settings: dict[str, str]) -> str | None:
    """A SELECT with ``SETTINGS ...`` placed before its FORMAT clause, or None when unsafe."""
    if not settings:
        return sql
    if not _SELECT.match(sql) or re.search(r"\bSETTINGS\b", sql, re.IGNORECASE):
        return None
    clause = " SETTINGS " + ", ".join(f"{_identifier(k)} = {_literal(v)}" for k, v in settings.items())
    trailing = _TRAILING_FORMAT.search(sql)
    if trailing is None:
        return sql.rstrip().rstrip(";") + clause
    return sql[:trailing.start()] + clause + sql[trailing.start():]


def _identifier(name: str) -> str:
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
        raise _QueryFailed(f"Code: 36. DB::Exception: bad name {name!r}. (BAD_ARGUMENTS)", 36)
    return name


def _literal(value: str) -> str:
    if re.match(r"^-?\d+(\.\d+)?$", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
