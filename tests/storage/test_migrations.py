"""Migrations: self-checking steps, recorded; a store created by an older finsa is upgraded."""

from __future__ import annotations

from finsa.storage import rollups, schema
from finsa.storage.migrations import _is_cascade, column_steps, existing_columns, run_migrations
from finsa.storage.rollups import CASCADES, FLOW_FED_ROLLUPS, FLOW_ROLLUPS, RETIRED_ROLLUPS, SKETCHED_ROLLUPS
from finsa.wire import FLOW


def _old_flows_ddl(missing: set[str]) -> str:
    # flows as an older finsa made it: the same table without some columns
    new = schema.flows_ddl()
    lines = [line for line in new.splitlines() if line.strip().split(" ")[0] not in missing]
    return "\n".join(lines)


def test_fresh_store_applies_every_table_step_then_nothing(store):
    report = run_migrations(store)
    # upgrade steps: a fresh flows_1m has sources and sketches, and a fresh store no flows to roll up
    assert report.skipped == (["0009_flows_1m_sources", "flows_time_alias"]
                              + [f"sketch:{name}" for name in SKETCHED_ROLLUPS] + ["cascade:flows_1h"]
                              + [f"fill:{name}" for name in CASCADES]
                              + [f"backfill:{name}" for name in FLOW_FED_ROLLUPS]
                              + [f"retire:{name}" for name in RETIRED_ROLLUPS] + ["talkers:bytes_only"])
    assert report.applied[0] == "0001_create_schema_migrations"
    again = run_migrations(store)
    assert again.applied == [] and "0002_create_flows" in again.skipped


#: (flows, bytes, sources) of a heavy-hitter talkers roll-up: sums over its merged states.
_TOP = ("SELECT arraySum(x -> x.2, f), arraySum(x -> x.2, b), length(b) FROM (SELECT "
        "approx_top_sumMerge(1024, 1024)(top_flows) AS f, approx_top_sumMerge(1024, 1024)(top) AS b FROM {})")
#: (bytes, sources) of the hourly talkers roll-up (a bytes state only).
_TOP_BYTES = "SELECT arraySum(x -> x.2, b), length(b) FROM (SELECT approx_top_sumMerge(1024, 1024)(top) AS b FROM {})"


def test_flows_stored_after_the_views_are_not_backfilled(store, make_flows):
    store.migrate()
    store.insert(make_flows(5))
    assert store.migrate() == []
    assert store.query(_TOP.format("talkers_top_1d")).rows[0][0] == 5


def test_older_store_is_upgraded_and_keeps_its_rows(store, make_flows):
    missing = {"ssh_banner", "tls_ja4"}
    store.command(_old_flows_ddl(missing))
    old_columns = existing_columns(store, "flows")
    assert "ssh_banner" not in old_columns and "tls_ja4" not in old_columns
    store.command("INSERT INTO flows (flow_id, first_seen_ms, institution_id, src_ip) VALUES "
                  "(1, 1700000000000, 'bank-a', '10.0.0.1'), (2, 1700000001000, 'bank-a', '10.0.0.2')")
    applied = store.migrate()
    assert "0002_create_flows" not in applied  # the table was there: skipped, not recreated
    assert {"add_column:flows.ssh_banner", "add_column:flows.tls_ja4"} <= set(applied)
    assert existing_columns(store, "flows") == [c.name for c in schema.derived_columns(FLOW)]
    rows = store.query("SELECT flow_id, src_ip, ssh_banner, tls_ja4 FROM flows ORDER BY flow_id").rows
    assert rows == [(1, "10.0.0.1", "", ""), (2, "10.0.0.2", "", "")]
    comment = store.query("SELECT comment FROM system.columns WHERE database = currentDatabase() "
                          "AND table = 'flows' AND name = 'ssh_banner'").rows
    assert comment == [(FLOW.field("ssh_banner").doc,)]
    assert store.migrate() == []
    recorded = {r[0] for r in store.query("SELECT version FROM schema_migrations FINAL").rows}
    assert "add_column:flows.ssh_banner" in recorded


def test_column_steps_come_from_the_wire_record(store):
    store.migrate()
    assert column_steps(store) == []
    store.command("ALTER TABLE alerts DROP COLUMN confidence")  # one no roll-up view reads
    steps = column_steps(store)
    assert [s.version for s in steps] == ["add_column:alerts.confidence"]
    store.migrate()
    columns = existing_columns(store, "alerts")
    assert columns.index("confidence") == columns.index("score") + 1


def test_ttl_is_configurable(store):
    store.migrate(ttl_days={"flows": 7, "heartbeats": 0})
    ddl = {r[0]: r[1] for r in store.query("SELECT name, create_table_query FROM system.tables "
                                           "WHERE database = currentDatabase()").rows}
    assert "toIntervalDay(7)" in ddl["flows"]
    assert "TTL stored_at" not in ddl["heartbeats"]
    assert "toIntervalDay(365)" in ddl["alerts"]


_OLD_FLOWS = ("INSERT INTO flows (flow_id, first_seen_ms, last_seen_ms, institution_id, src_ip, dst_ip, dst_port, "
              "protocol, src2dst_bytes, stored_at) SELECT number, 1700000000000 + number * 600000, "
              "1700000000000 + number * 600000 + 500, if(number % 2, 'bank-a', 'bank-b'), "
              "toIPv6(concat('10.0.0.', toString(number % 7))), '192.0.2.1', 443, 6, 100, now() - 3600 "
              "FROM numbers(48)")  # eight hours of flows, stored an hour ago


def test_flow_panel_rollups_reach_an_older_store_and_roll_up_its_flows_once(store, make_flows):
    store.migrate()
    for name in FLOW_ROLLUPS:  # a store made before these roll-ups, holding flows
        store.command(f"DROP VIEW {name}_mv")
        store.command(f"DROP TABLE {name}")
    store.command(_OLD_FLOWS)
    applied = store.migrate()
    assert [v for v in applied if "talkers" in v] == [
        "0031_create_talkers_top_1h", "0032_create_talkers_top_1h_mv", "0033_create_talkers_top_1d",
        "0034_create_talkers_top_1d_mv", "backfill:talkers_top_1h", "backfill:talkers_top_1d"]
    assert {f"backfill:{name}" for name in FLOW_FED_ROLLUPS} <= set(applied)
    assert store.query(_TOP.format("talkers_top_1d")).rows == [(48, 4800, 7)]
    assert store.query(_TOP_BYTES.format("talkers_top_1h")).rows == [(4800, 7)]  # seven sources, 100 bytes a flow
    hours = store.query("SELECT uniqExact(institution_id, toStartOfHour(first_seen)) FROM flows").rows
    assert store.query("SELECT count() FROM talkers_top_1h FINAL").rows == hours  # a state per institution and hour
    assert store.query("SELECT sum(flows), uniqCombinedMerge(12)(clients) FROM services_1h").rows == [(48, 7)]
    assert store.query("SELECT count() FROM ingest_lag_1m").rows == [(48,)]
    assert store.migrate() == []  # backfilled once
    store.insert(make_flows(10))
    assert store.query(_TOP.format("talkers_top_1d")).rows[0][0] == 58
    assert store.migrate() == []


def _bytes_of(batch) -> int:
    return int(batch.columns["src2dst_bytes"].sum() + batch.columns["dst2src_bytes"].sum())


def test_an_older_stores_hourly_talkers_lose_their_flows_state_and_keep_their_bytes(store, make_flows):
    store.migrate()
    # the store as it was: talkers_top_1h with a flows state, its view writing both
    store.command("DROP VIEW talkers_top_1h_mv")
    store.command(f"ALTER TABLE talkers_top_1h ADD COLUMN top_flows {rollups.TALKERS_TOP_TYPE} AFTER top")
    store.command(rollups.flow_rollup_view_ddl("talkers_top_1d").replace("talkers_top_1d", "talkers_top_1h")
                  .replace("toStartOfDay(first_seen) AS day", "toStartOfHour(first_seen) AS hour")
                  .replace("GROUP BY day", "GROUP BY hour"))
    store.command("DELETE FROM schema_migrations WHERE version LIKE 'backfill:%'")  # as a store with no flows then
    older = make_flows(30, start_ms=1_700_000_000_000)
    store.insert(older)
    assert store.query(_TOP.format("talkers_top_1h")).rows == [(30, _bytes_of(older), 30)]

    applied = store.migrate()
    assert "talkers:bytes_only" in applied and "backfill:talkers_top_1h" not in applied  # nothing rolled up twice
    assert "top_flows" not in existing_columns(store, "talkers_top_1h")
    view = store.query("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() "
                       "AND name = 'talkers_top_1h_mv'").rows[0][0]
    assert "top_flows" not in view and "talkers_top_1h" in view
    assert store.query(_TOP_BYTES.format("talkers_top_1h")).rows == [(_bytes_of(older), 30)]  # the states kept
    later = make_flows(20, start_ms=1_700_000_100_000)
    store.insert(later)
    got = store.query(_TOP_BYTES.format("talkers_top_1h")).rows[0][0]
    assert got == _bytes_of(older) + _bytes_of(later)  # written by the new view
    assert store.migrate() == []


def test_flows_settings_reach_an_older_store_and_its_flows_read_back(store, make_flows):
    from finsa.storage.migrations import FLOWS_SETTINGS

    store.migrate()
    store.command("ALTER TABLE flows MODIFY SETTING ratio_of_defaults_for_sparse_serialization = 0.9375")
    batch = make_flows(40)
    store.insert(batch)
    assert store.migrate() == ["settings:flows"]
    created = store.query("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() "
                          "AND name = 'flows'").rows[0][0]
    assert all(f"{k} = {v}" in created for k, v in FLOWS_SETTINGS.items())
    store.insert(make_flows(40, start_ms=1_700_000_000_000))  # a part written with the new settings
    rows = store.query("SELECT tls_sni, count() FROM flows GROUP BY tls_sni ORDER BY tls_sni LIMIT 2").rows
    assert rows == [("", 28), ("h1.example.com", 2)]
    assert store.migrate() == []


def test_an_older_stores_per_source_talkers_stop_being_written_and_keep_their_rows(store, make_flows):
    store.migrate()
    for name, bucket in (("talkers_1h", "toStartOfHour"), ("talkers_1d", "toStartOfDay")):  # as finsa made them
        store.command(f"CREATE TABLE {name} (b DateTime, institution_id String, src_ip IPv6, flows UInt64) "
                      "ENGINE = SummingMergeTree ORDER BY (institution_id, b, src_ip)")
        store.command(f"CREATE MATERIALIZED VIEW {name}_mv TO {name} AS SELECT {bucket}(first_seen) AS b, "
                      "institution_id, src_ip, count() AS flows FROM flows GROUP BY ALL")
    store.insert(make_flows(5))
    assert store.migrate() == ["retire:talkers_1h", "retire:talkers_1d"]
    store.insert(make_flows(7, institution="ins-b"))  # another batch (another batch id)
    for name in RETIRED_ROLLUPS:
        assert store.query(f"SELECT sum(flows) FROM {name}").rows == [(5,)], name  # kept, no longer written
        assert store.query("SELECT count() FROM system.tables WHERE database = currentDatabase() "
                           f"AND name = '{name}_mv'").rows == [(0,)]
    assert store.migrate() == []



def _old_sketch(sql: str) -> str:
    # the roll-ups as finsa made them before uniqCombined(12): ClickHouse uniq states
    return (sql.replace(schema.DISTINCT_IP_TYPE, "AggregateFunction(uniq, IPv6)")
            .replace(schema.DISTINCT_STATE, "uniqState").replace(schema.DISTINCT_MERGE, "uniqMerge"))


#: flows_1h's view before it was a cascade of flows_1m: every flow rolled up by hour.
_OLD_FLOWS_1H_VIEW = f"CREATE MATERIALIZED VIEW IF NOT EXISTS flows_1h_mv TO flows_1h AS\n{schema.traffic_select('1h')}"


def _make_pre_sketch_store(store) -> None:
    """A store as the code before talkers_1d and uniqCombined made it."""
    store.migrate()
    for name in SKETCHED_ROLLUPS:
        store.command(f"DROP VIEW {name}_mv")
        store.command(f"DROP TABLE {name}")
    store.command("DELETE FROM schema_migrations WHERE version LIKE 'sketch:%'")
    for table, view in {"flows_1m": (schema.flows_1m_ddl(7), schema.flows_1m_view_ddl()),
                                "flows_1h": (rollups.flows_1h_ddl(365), _OLD_FLOWS_1H_VIEW),
                                "services_1h": (rollups.flow_rollup_ddl("services_1h", 365),
                                                rollups.flow_rollup_view_ddl("services_1h"))}.values():
        store.command(_old_sketch(table))
        store.command(_old_sketch(view))


_TOTALS = {"flows_1m": "SELECT sum(flows), sum(bytes), sum(packets), {m}(sources), count() FROM flows_1m",
           "flows_1h": "SELECT sum(flows), sum(bytes), sum(packets), {m}(sources), count() FROM flows_1h",
           "services_1h": "SELECT sum(flows), sum(bytes), {m}(clients), {m}(servers) FROM services_1h"}


def test_a_store_with_uniq_states_is_rebuilt_with_sketches_keeping_its_data(store, make_flows):
    _make_pre_sketch_store(store)
    store.command(_OLD_FLOWS.replace("now() - 3600", "now()"))  # stored now: rolled up by the old views
    store.command("INSERT INTO flows_1h (hour, institution_id, flows, bytes, packets) "
                  "VALUES ('2020-01-01 05:00:00', 'bank-a', 3, 300, 9)")  # its flows expired long ago
    before = {name: store.query(sql.format(m="uniqMerge")).rows for name, sql in _TOTALS.items()}
    applied = store.migrate()
    assert [v for v in applied if v.startswith(("sketch:", "fill:"))] == [
        "sketch:flows_1m", "sketch:flows_1h", "sketch:services_1h"]
    assert "backfill:services_1h" not in applied  # the rebuild rolled every stored flow up
    created = store.query("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() "
                          "AND name = 'flows_1m'").rows
    assert "TTL stored_at + toIntervalDay(7)" in created[0][0]  # the TTL the store had
    after = {name: store.query(sql.format(m=schema.DISTINCT_MERGE)).rows for name, sql in _TOTALS.items()}
    assert after == before  # sums, counts of rows, and (small, exact) distinct counts
    old_hour = "SELECT flows, bytes, packets, {m}(sources) FROM flows_1h WHERE hour < '2021-01-01' GROUP BY ALL"
    assert store.query(old_hour.format(m=schema.DISTINCT_MERGE)).rows == [(3, 300, 9, 0)]  # sums kept
    assert store.migrate() == []
    store.insert(make_flows(10))  # the new views write sketches
    exact = store.query("SELECT count(), uniqExact(src_ip) FROM flows").rows
    assert store.query(f"SELECT sum(flows), {schema.DISTINCT_MERGE}(clients) FROM services_1h").rows == exact
    assert store.query(_TOP.format("talkers_top_1d")).rows[0][0] == 58


def test_an_interrupted_rebuild_is_done_again_from_scratch(store):
    _make_pre_sketch_store(store)
    store.command(_OLD_FLOWS.replace("now() - 3600", "now()"))
    # a crash right after the swap: an empty rebuilt flows_1h, the old view still on it
    store.command(rollups.flows_1h_ddl(365).replace("EXISTS flows_1h (", "EXISTS flows_1h_resketch ("))
    store.command("EXCHANGE TABLES flows_1h AND flows_1h_resketch")
    assert "sketch:flows_1h" in store.migrate()
    assert store.query(f"SELECT sum(flows), {schema.DISTINCT_MERGE}(sources) FROM flows_1h").rows == [(48, 7)]
    assert "flows_1h_resketch" not in {r[0] for r in store.query("SHOW TABLES").rows}
    assert store.migrate() == []


def test_a_flow_v1_store_gains_the_v2_list_columns(store):
    """FLOW v2's lists (dns_queries, http_requests, app_markers) are added to a store made for v1,
    its rows kept with empty lists; a second run has nothing to do."""
    v2 = {"dns_queries", "http_requests", "app_markers"}
    store.command(_old_flows_ddl(v2))
    store.command("INSERT INTO flows (flow_id, first_seen_ms, institution_id, src_ip, dns_query) VALUES "
                  "(1, 1700000000000, 'bank-a', '10.0.0.1', 'a.example')")
    applied = store.migrate()
    assert {f"add_column:flows.{name}" for name in v2} <= set(applied)
    assert store.query("SELECT dns_query, dns_queries, http_requests, app_markers FROM flows").rows == [
        ("a.example", "", "", "")]
    assert store.migrate() == []


def test_an_older_store_gains_the_destination_projection_built_for_its_rows(store):
    from finsa.errors import StorageError
    DST_PROJECTION = "flows_by_dst"

    store.command(schema.flows_ddl())  # flows as before the projection step
    # 50,000 flows to 198.18.0.0-198.18.234.95 (in time order: every granule spans them all)
    store.command("INSERT INTO flows (flow_id, first_seen_ms, institution_id, src_ip, dst_ip, dst_port) "
                  "SELECT number, 1700000000000 + number, 'bank-a', toIPv6('10.0.0.1'), "
                  "toIPv6(IPv4NumToString(toUInt32(3323068416 + number % 60000))), 443 FROM numbers(50000)")
    chart = ("SELECT count() FROM flows WHERE dst_ip BETWEEN toIPv6('198.18.7.0') AND toIPv6('198.18.7.255') "
             "AND first_seen_ms > 0")

    def reads_projection() -> bool:  # ClickHouse chose the projection (it raises when it did not)
        try:
            rows = store.query(f"{chart} SETTINGS force_optimize_projection_name = '{DST_PROJECTION}'").rows
        except StorageError:
            return False
        return rows == [(256,)]

    assert not reads_projection()
    applied = store.migrate()
    assert {"projection:flows.flows_by_dst", "projection:flows.flows_by_src"} <= set(applied)
    built = store.query("SELECT count() FROM system.projection_parts WHERE database = currentDatabase() "
                        "AND table = 'flows' AND name = {n:String} AND active", {"n": DST_PROJECTION}).rows
    assert built[0][0] >= 1  # materialised for the part stored before the step
    assert reads_projection() and store.query(chart).rows == [(256,)]
    assert "projection:flows.flows_by_dst" not in store.migrate()


def test_an_older_flows_1h_view_reading_flows_becomes_the_cascade_of_flows_1m(store, make_flows):
    store.migrate()
    store.command("DROP VIEW flows_1h_mv")
    store.command(_OLD_FLOWS_1H_VIEW)
    store.insert(make_flows(30))
    assert store.migrate() == ["cascade:flows_1h"]
    store.insert(make_flows(20, institution="ins-b"))
    assert store.query("SELECT institution_id, sum(flows), uniqCombinedMerge(12)(sources) FROM flows_1h "
                       "GROUP BY institution_id ORDER BY institution_id").rows == [("bank-a", 30, 30), ("ins-b", 20, 20)]
    assert store.migrate() == []


def test_a_store_older_than_flows_1h_with_uniq_states_migrates_to_the_cascade(store, make_flows):
    _make_pre_sketch_store(store)
    store.command("DROP VIEW flows_1h_mv")
    store.command("DROP TABLE flows_1h")  # a store from before flows_1h, its flows_1m still of uniq states
    applied = store.migrate()  # 0011 waits for sketch:flows_1m (it failed here: uniq, not uniqCombined)
    assert "0010_create_flows_1h" in applied and "0011_create_flows_1h_mv" not in applied
    view = store.query("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() "
                       "AND name = 'flows_1h_mv'").rows[0][0]
    assert _is_cascade(view)  # made after flows_1m's rebuild (by sketch:flows_1h or cascade:flows_1h)
    store.insert(make_flows(12))
    assert store.query(f"SELECT sum(flows), {schema.DISTINCT_MERGE}(sources) FROM flows_1h").rows == [(12, 12)]
    assert store.migrate() == []


def test_a_cluster_nodes_flows_1h_view_is_left_to_the_cluster_ddl(store):
    store.migrate()
    store.command("DROP VIEW flows_1h_mv")
    store.command(_OLD_FLOWS_1H_VIEW)
    store.command("CREATE TABLE flows_1m_local AS flows_1m")  # what marks a node of a cluster
    assert "cascade:flows_1h" not in store.migrate()
    view = store.query("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() "
                       "AND name = 'flows_1h_mv'").rows[0][0]
    assert "flows_1m" not in view  # still the view the node had
