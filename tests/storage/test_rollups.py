"""Roll-ups: fed on insert, deduplicated with their source, enriched by address, per subsector,
per talker, service and ingest minute."""

from __future__ import annotations

from finsa.institutions import parse_registry
from finsa.storage.rollups import FLOW_ROLLUP_TTL_DAYS
from finsa.storage.schema import DEFAULT_TTL_DAYS

REGISTRY = parse_registry({"institution": [
    {"id": "bank-a", "name": "A", "subsector": "bank", "region": "north"},
    {"id": "ins-b", "name": "B", "subsector": "insurance", "region": "south"}]})


def test_flow_rollups_count_sources_and_skip_a_redelivered_batch(migrated, make_flows):
    batch = make_flows(40, start_ms=1_700_000_000_000)  # 40 s inside one hour (22:13 UTC), whatever the clock
    migrated.insert(batch)
    migrated.command("TRUNCATE TABLE ingested_batches")  # ledger lost: the insert token still dedups
    migrated.insert(batch)
    for table in ("flows_1m", "flows_1h"):
        flows, packets, sources = migrated.query(
            f"SELECT sum(flows), sum(packets), uniqCombinedMerge(12)(sources) FROM {table}").rows[0]
        assert (flows, packets) == (40, sum(2 * i + 1 for i in range(40))), table
        assert sources == 40, table


def test_flows_1h_rolled_up_from_flows_1m_equals_the_hours_rolled_up_from_flows(migrated):
    import numpy as np

    from finsa.wire import FLOW

    migrated.command("TRUNCATE TABLE flows_1h")
    rng = np.random.default_rng(7)
    start = 1_700_000_000_000
    for k in range(4):  # four writes over two hours: each hour's sketch merged from many minute rows
        n = 6_000
        migrated.insert(FLOW.make_batch({
            "flow_id": np.arange(n, dtype=np.uint64) + k * n, "first_seen_ms": start + rng.integers(0, 7_200_000, n),
            "institution_id": np.array(["bank-a", "ins-b"], dtype=object)[rng.integers(0, 2, n)],
            "src_ip": [f"10.{k}.{a // 256}.{a % 256}" for a in rng.integers(0, 5_000, n)],
            "src2dst_bytes": rng.integers(0, 10_000, n), "src2dst_packets": rng.integers(1, 50, n)}))
    cascade = migrated.query("SELECT hour, institution_id, sum(flows), sum(bytes), sum(packets), "
                             "uniqCombinedMerge(12)(sources) FROM flows_1h GROUP BY ALL ORDER BY ALL").rows
    direct = migrated.query("SELECT toStartOfHour(first_seen) AS hour, institution_id, count(), "
                            "sum(src2dst_bytes + dst2src_bytes), sum(src2dst_packets + dst2src_packets), "
                            "uniqCombined(12)(src_ip) FROM flows GROUP BY ALL ORDER BY ALL").rows
    assert len(direct) == 6 and max(r[5] for r in direct) > 1_000  # sketches past their exact sets
    assert cascade == direct


#: The heavy-hitter states as (flows, bytes, sources) summed over their (source, count, error)
#: tuples; the hourly roll-up has the bytes state only (bytes, sources).
_TOP = ("SELECT arraySum(x -> x.2, f), arraySum(x -> x.2, b), length(b) FROM (SELECT "
        "approx_top_sumMerge(1024, 1024)(top_flows) AS f, approx_top_sumMerge(1024, 1024)(top) AS b FROM {})")
_TOP_BYTES = "SELECT arraySum(x -> x.2, b), length(b) FROM (SELECT approx_top_sumMerge(1024, 1024)(top) AS b FROM {})"
FLOW_PANEL_ROLLUPS = {  # roll-up -> what it reads back: sums of flows and bytes as it has them, and a distinct count
    "talkers_top_1h": (_TOP_BYTES.format("talkers_top_1h"), ("bytes", "sources")),
    "services_1h": ("SELECT sum(flows), sum(bytes), uniqCombinedMerge(12)(clients) FROM services_1h",
                    ("flows", "bytes", "sources")),
    "talkers_top_1d": (_TOP.format("talkers_top_1d"), ("flows", "bytes", "sources")),
}


def test_flow_panel_rollups_skip_a_redelivered_batch(migrated, make_flows):
    for table in ("talkers_top_1h", "talkers_top_1d", "services_1h", "ingest_lag_1m"):
        migrated.command(f"TRUNCATE TABLE {table}")
    batch = make_flows(40, start_ms=1_700_000_000_000)  # 40 s inside one hour (22:13 UTC), whatever the clock
    migrated.insert(batch)
    migrated.command("TRUNCATE TABLE ingested_batches")  # ledger lost: the insert token still dedups
    migrated.insert(batch)
    total_bytes = sum((i + 1) * 100 + i * 1000 for i in range(40))
    totals = {"flows": 40, "bytes": total_bytes, "sources": 40}
    for table, (sql, measures) in FLOW_PANEL_ROLLUPS.items():
        assert migrated.query(sql).rows == [tuple(totals[m] for m in measures)], table
    assert migrated.query("SELECT count() FROM talkers_top_1h FINAL").rows == [(1,)]  # one row per hour
    assert migrated.query("SELECT count() FROM talkers_top_1d FINAL").rows == [(1,)]
    assert migrated.query("SELECT count() FROM services_1h FINAL").rows == [(1,)]  # tcp/443
    lag = migrated.query("SELECT max(lag_ms) FROM ingest_lag_1m").rows[0][0]
    raw = migrated.query("SELECT max(toInt64(toUnixTimestamp(stored_at)) * 1000 - last_seen_ms) FROM flows").rows
    assert lag == raw[0][0]


def test_alert_rollups_count_a_reemitted_alert_once(migrated, make_alerts):
    migrated.command("TRUNCATE TABLE alerts_1m")
    migrated.command("TRUNCATE TABLE alerts_1h")
    migrated.insert(make_alerts(["x-1", "x-2"], time_ms=1_700_000_000_000))
    migrated.insert(make_alerts(["x-1"], time_ms=1_700_000_000_000))  # same id, another batch
    for table in ("alerts_1m", "alerts_1h"):
        rows = migrated.query(f"SELECT institution_id, detector, technique, severity, uniqExactMerge(alerts), "
                              f"max(max_score) FROM {table} GROUP BY ALL").rows
        assert rows == [("bank-a", "portscan", "T1046", 4, 2, 12.5)], table


def test_alerts_by_attacker_country_and_asn_and_by_subsector(migrated, make_alerts):
    for table in ("alerts_geo_1h", "alerts_subsector_1h"):
        migrated.command(f"TRUNCATE TABLE {table}")
    migrated.load_institutions(REGISTRY)
    assert migrated.load_ip_enrichment([("203.0.113.0/24", "FR", 64500, "EXAMPLE-FR"),
                                        ("2001:db8::/32", "DE", 64501, "EXAMPLE-DE")]) == 2
    first = make_alerts(["g-1", "g-2", "g-3"])
    first.columns["entity"][:] = ["203.0.113.9", "2001:db8::5", "not an address"]
    first.columns["institution_id"][:] = ["bank-a", "ins-b", "unknown-c"]
    migrated.insert(first)
    geo = migrated.query("SELECT country, asn, any(as_name), uniqExactMerge(alerts), uniqExactMerge(institutions) "
                         "FROM alerts_geo_1h GROUP BY country, asn ORDER BY country").rows
    assert geo == [("", 0, "", 1, 1), ("DE", 64501, "EXAMPLE-DE", 1, 1), ("FR", 64500, "EXAMPLE-FR", 1, 1)]
    by_subsector = migrated.query("SELECT subsector, region, uniqExactMerge(alerts) FROM alerts_subsector_1h "
                                  "GROUP BY subsector, region ORDER BY subsector").rows
    assert by_subsector == [("", "", 1), ("bank", "north", 1), ("insurance", "south", 1)]


def test_rollups_have_a_year_ttl_from_storage_time(migrated):
    ddl = dict(migrated.query("SELECT name, create_table_query FROM system.tables "
                              "WHERE database = currentDatabase()").rows)
    for table in ("flows_1m", "flows_1h", "alerts_1m", "alerts_1h", "alerts_geo_1h", "alerts_subsector_1h"):
        assert "TTL stored_at + toIntervalDay(365)" in ddl[table], table
    for table, days in FLOW_ROLLUP_TTL_DAYS.items():
        assert f"TTL stored_at + toIntervalDay({DEFAULT_TTL_DAYS.get(table, days)})" in ddl[table], table
    assert "TTL stored_at" not in ddl["threat_levels"] and " TTL " not in ddl["audit_log"].replace("(no TTL)", "")


def test_sector_tables_keep_the_newest_campaign_and_every_level(migrated):
    migrated.command("TRUNCATE TABLE campaigns")
    migrated.command("TRUNCATE TABLE threat_levels")
    migrated.write_rows("campaigns", [{"campaign_id": "c1", "first_seen_ms": 1, "last_seen_ms": 5, "alerts": 2}])
    migrated.write_rows("campaigns", [{"campaign_id": "c1", "first_seen_ms": 1, "last_seen_ms": 9, "alerts": 7}])
    assert migrated.query("SELECT alerts FROM campaigns FINAL").rows == [(7,)]
    migrated.write_rows("threat_levels", [{"time_ms": t, "scope_kind": "sector", "level": 2} for t in (1, 2)])
    assert migrated.query("SELECT count() FROM threat_levels").rows == [(2,)]


def test_sector_records_are_inserted_idempotently_from_the_wire(migrated):
    from finsa.wire import EMERGENCY, LEVEL

    migrated.command("TRUNCATE TABLE threat_levels")
    batch = LEVEL.make_batch({"time_ms": [60_000, 60_000], "scope_kind": ["institution", "sector"],
                              "scope_id": ["bank-a", ""], "level": [3, 2], "contributions": ['{"a": 1}', "{}"]})
    assert migrated.insert(batch) is True and migrated.insert(batch) is False
    assert migrated.query("SELECT scope_kind, level, toUnixTimestamp(time) FROM threat_levels ORDER BY level").rows == [
        ("sector", 2, 60), ("institution", 3, 60)]
    assert migrated.insert(EMERGENCY.make_batch({"emergency_id": ["e1"], "institution_id": ["bank-a"]}))
    assert migrated.query("SELECT emergency_id FROM emergencies").rows == [("e1",)]
