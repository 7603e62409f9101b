"""The Store interface, on both backends (see conftest: chdb, and clickhouse-connect over HTTP)."""

from __future__ import annotations

import threading

import pytest

from finsa.errors import StorageError
from finsa.institutions import parse_registry
from finsa.wire import HEARTBEAT, ips_to_strings

FLOW_CHECKED = ["flow_id", "first_seen_ms", "institution_id", "ip_version", "src_ip", "dst_ip", "src_port",
                "src2dst_bytes", "dst2src_bytes", "tls_sni", "dns_query", "http_uri"]


def test_migrate_twice_is_idempotent(store):
    first = store.migrate()
    assert "0002_create_flows" in first and "0007_create_flows_1m_mv" in first
    assert store.migrate() == []
    tables = {r[0] for r in store.query("SELECT name FROM system.tables WHERE database = currentDatabase()").rows}
    assert {"flows", "alerts", "heartbeats", "institutions", "flows_1m", "flows_1m_mv", "schema_migrations"} <= tables
    recorded = store.query("SELECT count() FROM schema_migrations FINAL").rows[0][0]
    assert recorded == len(first)


def test_flows_come_back_equal(migrated, make_flows):
    batch = make_flows(40)
    assert migrated.insert(batch) is True
    got = migrated.query(f"SELECT {', '.join(FLOW_CHECKED)} FROM flows ORDER BY flow_id").dicts()
    expected = [{k: row[k] for k in FLOW_CHECKED} for row in batch.rows()]
    assert got == expected
    assert ips_to_strings(batch.columns["src_ip"])[1].startswith("2001:db8::")


def test_rows_carry_batch_id_and_times(migrated, make_flows):
    batch = make_flows(3)
    migrated.insert(batch)
    rows = migrated.query("SELECT hex(batch_id) AS b, toUnixTimestamp64Milli(first_seen) AS t, first_seen_ms "
                          "FROM flows ORDER BY flow_id").rows
    assert {r[0].lower() for r in rows} == {batch.batch_id_hex}
    assert all(t == ms for _, t, ms in rows)


def test_alerts_come_back_equal(migrated, make_alerts):
    batch = make_alerts(["a1", "a2"])
    migrated.insert(batch)
    got = migrated.query("SELECT * EXCEPT (batch_id, stored_at) FROM alerts FINAL ORDER BY alert_id").dicts()
    assert got == batch.rows()


def test_same_batch_twice_leaves_one_copy(migrated, make_flows):
    batch = make_flows(30)
    assert migrated.insert(batch) is True
    assert migrated.insert(batch) is False
    assert migrated.query("SELECT count() FROM flows").rows == [(30,)]
    assert migrated.query("SELECT sum(flows) FROM flows_1m").rows == [(30,)]


def test_dedup_token_alone_keeps_one_copy(migrated, make_flows):
    # A crash after the data write but before the ledger write: the ledger forgets the batch,
    # ClickHouse's deduplication token still drops the repeat, in flows and in the roll-up.
    batch = make_flows(30, start_ms=1_700_006_400_000 - 15_000)  # 15 s before midnight: two partitions
    migrated.insert(batch)
    assert migrated.query("SELECT uniqExact(toDate(first_seen)) FROM flows").rows == [(2,)]
    migrated.command("TRUNCATE TABLE ingested_batches")
    migrated.insert(batch)
    assert migrated.query("SELECT count() FROM flows").rows == [(30,)]
    assert migrated.query("SELECT sum(flows) FROM flows_1m").rows == [(30,)]


def test_same_alert_in_two_batches_counts_once_with_final(migrated, make_alerts):
    migrated.insert(make_alerts(["x-1", "x-2"]))
    migrated.insert(make_alerts(["x-1"]))
    assert migrated.query("SELECT count() FROM alerts FINAL").rows == [(2,)]
    assert migrated.query("SELECT count(DISTINCT alert_id) FROM alerts").rows == [(2,)]


def test_heartbeats_and_empty_batch(migrated):
    assert migrated.insert(HEARTBEAT.make_batch({"sensor_id": [], "packets": []})) is True
    migrated.insert(HEARTBEAT.make_batch({"sensor_id": ["s1"], "packets": [9], "version": ["0.1.0"]}))
    assert migrated.query("SELECT sensor_id, packets, version FROM heartbeats").rows == [("s1", 9, "0.1.0")]


def test_rollup_fills(migrated, make_flows):
    start = 1_700_000_040_000  # a minute boundary
    migrated.insert(make_flows(90, start_ms=start, institution="bank-a"))
    migrated.insert(make_flows(10, start_ms=start, institution="bank-b"))
    rows = migrated.query("SELECT institution_id, toUnixTimestamp(minute) AS m, sum(flows), sum(bytes), "
                          "sum(packets) FROM flows_1m GROUP BY institution_id, m ORDER BY institution_id, m").rows
    expected = migrated.query("SELECT institution_id, toUnixTimestamp(toStartOfMinute(first_seen)) AS m, count(), "
                              "sum(src2dst_bytes + dst2src_bytes), sum(src2dst_packets + dst2src_packets) "
                              "FROM flows GROUP BY institution_id, m ORDER BY institution_id, m").rows
    assert rows == expected
    assert [r[2] for r in rows] == [60, 30, 10]


def test_institutions_load(migrated):
    registry = parse_registry({"institution": [
        {"id": "bank-a", "name": "Alpine Bank", "subsector": "bank", "region": "north", "criticality": 5,
         "networks": ["10.1.0.0/16", "2001:db8:a::/48"], "latitude": 46.9, "longitude": 7.4},
        {"id": "pay-b", "name": "Pay B", "subsector": "payment"}]})
    assert migrated.load_institutions(registry) == 2
    assert migrated.load_institutions(registry) == 2  # replaces, no duplicates
    rows = migrated.query("SELECT * FROM institutions ORDER BY id").rows
    assert rows == [("bank-a", "Alpine Bank", "bank", "north", 5, ["10.1.0.0/16", "2001:db8:a::/48"], 46.9, 7.4),
                    ("pay-b", "Pay B", "payment", "unknown", 3, [], None, None)]


def test_query_parameters_and_empty_result_columns(migrated, make_flows):
    migrated.insert(make_flows(5))
    result = migrated.query("SELECT flow_id, src_port FROM flows WHERE flow_id > {f:UInt64} ORDER BY flow_id",
                            {"f": 3})
    assert result.rows == [(4, 40003), (5, 40004)]
    empty = migrated.query("SELECT flow_id, tls_sni FROM flows WHERE flow_id > 100")
    assert empty.columns == ["flow_id", "tls_sni"] and empty.rows == []


def test_bad_sql_is_a_storage_error(migrated):
    with pytest.raises(StorageError, match="Code: 62"):
        migrated.query("SELEC 1")
    with pytest.raises(StorageError, match="UNKNOWN_TABLE|Unknown table"):
        migrated.query("SELECT * FROM no_such_table")


def test_threads_share_one_store(migrated, make_flows):
    batches = [make_flows(20) for _ in range(4)]
    errors: list[Exception] = []

    def work(batch):
        try:
            migrated.insert(batch)
            migrated.query("SELECT count() FROM flows")
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert migrated.query("SELECT count(), uniqExact(batch_id) FROM flows").rows == [(80, 4)]
