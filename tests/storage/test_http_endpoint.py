"""The ClickHouse HTTP endpoint served from chdb, spoken to with plain HTTP and clickhouse-connect."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

import clickhouse_connect
import pytest

from finsa.storage.clickhouse_http import ClickHouseHTTPEndpoint

pytestmark = pytest.mark.integration


def _get(endpoint, path: str, body: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(endpoint.url + path, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _q(**params: str) -> str:
    return "/?" + urllib.parse.urlencode(params)


def test_ping(endpoint):
    assert _get(endpoint, "/ping")[::2] == (200, b"Ok.\n")


def test_select_in_query_or_body_with_format_and_headers(endpoint):
    status, headers, body = _get(endpoint, _q(query="SELECT 1 + 1 AS two"))
    assert (status, body) == (200, b"2\n")
    assert headers["X-ClickHouse-Timezone"] == "UTC" and "X-ClickHouse-Summary" in headers
    _, _, body = _get(endpoint, _q(default_format="JSONEachRow"), b"SELECT 'a' AS x")
    assert body == b'{"x":"a"}\n'
    _, _, body = _get(endpoint, _q(query="SELECT {n:UInt8} * 2", param_n="21"))
    assert body == b"42\n"
    _, headers, body = _get(endpoint, _q(query="SELECT 1 AS a", default_format="RowBinaryWithNamesAndTypes"))
    assert body == b"\x01\x01a\x05UInt8\x01" and headers["X-ClickHouse-Format"] == "RowBinaryWithNamesAndTypes"
    _, headers, body = _get(endpoint, _q(query="SELECT 1 AS a FORMAT JSONEachRow", default_format="Native"))
    assert body == b'{"a":1}\n' and headers["X-ClickHouse-Format"] == "JSONEachRow"


def test_errors_are_500_with_the_code(endpoint):
    status, headers, body = _get(endpoint, _q(query="SELEC 1"))
    assert status == 500 and headers["X-ClickHouse-Exception-Code"] == "62"
    assert body.startswith(b"Code: 62. DB::Exception:")


def test_insert_with_data_in_the_body_database_and_settings(endpoint, engine):
    engine.command("CREATE DATABASE IF NOT EXISTS ep")
    engine.command("CREATE TABLE IF NOT EXISTS ep.t (a UInt32, s String) ENGINE = MergeTree ORDER BY a "
                   "SETTINGS non_replicated_deduplication_window = 100")
    for _ in range(2):
        status, _, _ = _get(endpoint, _q(query="INSERT INTO t (a, s) FORMAT CSV", database="ep",
                                         insert_deduplication_token="tok-1"), b"1,one\n2,two\n")
        assert status == 200
    _, _, body = _get(endpoint, _q(query="SELECT count(), currentDatabase() FROM t", database="ep"))
    assert body == b"2\tep\n"
    # the request's database and settings do not leak into the store's own session
    assert engine.query("SELECT currentDatabase(), getSetting('insert_deduplication_token')").rows == [
        ("default", "")]


def test_credentials_when_configured(engine):
    served = ClickHouseHTTPEndpoint(engine, credentials=("finsa", "pw")).start()
    try:
        status, headers, _ = _get(served, _q(query="SELECT 1"))
        assert status == 500 and headers["X-ClickHouse-Exception-Code"] == "516"
        client = clickhouse_connect.get_client(host="127.0.0.1", port=served.port, username="finsa",
                                               password="pw", compress=False)
        assert client.query("SELECT toIPv6('::ffff:10.0.0.1') AS ip, [1, 2] AS a").result_rows[0][1] == [1, 2]
        client.close()
    finally:
        served.stop()


def test_clickhouse_connect_native_round_trip(endpoint, engine):
    engine.command("CREATE TABLE IF NOT EXISTS default.rt (n UInt64, s LowCardinality(String), "
                   "x Nullable(Float64)) ENGINE = MergeTree ORDER BY n")
    # the client's defaults: lz4-compressed, chunked Native inserts
    client = clickhouse_connect.get_client(host="127.0.0.1", port=endpoint.port)
    client.insert("rt", [[1, "a", None], [2, "b", 2.5]], column_names=["n", "s", "x"])
    assert client.query("SELECT * FROM rt ORDER BY n").result_rows == [(1, "a", None), (2, "b", 2.5)]
    client.close()
