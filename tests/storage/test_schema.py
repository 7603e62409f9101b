"""The ClickHouse columns are derived from the wire records, field by field."""

from __future__ import annotations

import pytest

from finsa.storage.native import native_block, string_column, varuint
from finsa.storage.schema import CLICKHOUSE_TYPES, CODEC_OVERRIDES, column_sql, derived_columns, wire_columns
from finsa.wire import ALERT, FLOW, HEARTBEAT, RECORD_TYPES

import numpy as np


@pytest.mark.parametrize("rtype", list(RECORD_TYPES.values()), ids=lambda r: r.name)
def test_every_wire_field_is_a_column_with_its_type_codec_and_doc(rtype):
    columns = {c.name: c for c in wire_columns(rtype)}
    for f in rtype.fields:
        col = columns[f.name]
        base = CLICKHOUSE_TYPES[f.kind]
        assert col.type == (f"LowCardinality({base})" if f.low_cardinality else base)
        assert col.comment == f.doc
        chained = CODEC_OVERRIDES.get(rtype.name, {}).get(f.name, f.codec)
        assert col.codec.endswith("ZSTD(1)") and (not chained or col.codec.startswith(chained))
    assert columns["batch_id"].type == "FixedString(16)"


def test_time_columns_are_materialised_from_milliseconds():
    times = {c.name: c for c in derived_columns(ALERT) if c.expression}
    assert set(times) == {"time", "first_seen"}
    assert times["time"].expression == "fromUnixTimestamp64Milli(time_ms, 'UTC')"
    assert [c.name for c in derived_columns(HEARTBEAT) if c.expression] == ["time"]


def test_comments_are_quoted():
    sql = column_sql(next(c for c in wire_columns(ALERT) if c.name == "alert_id"))
    assert sql.startswith("alert_id String CODEC(ZSTD(1)) COMMENT 'Deterministic id")
    evil = column_sql(wire_columns(FLOW)[0].__class__("x", "String", "it's a \\ test"))
    assert evil.endswith("COMMENT 'it\\'s a \\\\ test'")


def test_varuint_and_strings():
    assert varuint(0) == b"\x00" and varuint(127) == b"\x7f" and varuint(300) == b"\xac\x02"
    values = np.array(["", "é", "", None], dtype=object)
    assert string_column(values) == b"\x00\x02\xc3\xa9\x00\x00"
    assert string_column(np.array(["ab"] * 3, dtype=object)) == b"\x02ab" * 3


def test_native_block_layout():
    batch = HEARTBEAT.make_batch({"packets": [1, 2]}, batch_id=b"B" * 16)
    names, payload = native_block(batch)
    assert names == [*HEARTBEAT.names, "batch_id"]
    assert payload[:2] == bytes([len(names), 2])
    assert payload.endswith(b"\x08batch_id\x0fFixedString(16)" + b"B" * 32)


def test_flow_times_are_aliases_stored_nowhere_and_other_times_materialised():
    flow_times = [c for c in derived_columns(FLOW) if c.expression]
    assert [(c.name, c.alias) for c in flow_times] == [("first_seen", True), ("last_seen", True)]
    assert " ALIAS fromUnixTimestamp64Milli(first_seen_ms, 'UTC') COMMENT" in column_sql(flow_times[0])
    assert all(not c.alias for c in derived_columns(ALERT))


def _old_flows_ddl() -> str:
    """flows as finsa made it before the times became ALIAS (MATERIALIZED, keyed on first_seen)."""
    from finsa.storage import schema

    ddl = schema.flows_ddl(ttl_days=7).replace(" ALIAS ", " MATERIALIZED ")
    return ddl.replace(schema.time_expression("first_seen_ms") + ")", "first_seen)").replace(
        "toDate(" + schema.time_expression("first_seen_ms") + ")", "toDate(first_seen)")


def test_older_flows_with_materialised_times_are_rebuilt_keeping_rows(store):
    store.command(_old_flows_ddl())
    store.command("INSERT INTO flows (flow_id, first_seen_ms, last_seen_ms, institution_id, src_ip) VALUES "
                  "(1, 1700000000000, 1700000000500, 'bank-a', '10.0.0.1'), (2, 1700000001000, 1700000002000, "
                  "'bank-a', '10.0.0.2')")
    times = "SELECT flow_id, toString(first_seen), toString(last_seen) FROM flows ORDER BY flow_id"
    before = store.query(times).rows
    applied = store.migrate()
    assert "flows_time_alias" in applied
    assert store.query(times).rows == before
    kinds = dict(store.query("SELECT name, default_kind FROM system.columns WHERE database = currentDatabase() "
                             "AND table = 'flows' AND name IN ('first_seen', 'last_seen')").rows)
    assert kinds == {"first_seen": "ALIAS", "last_seen": "ALIAS"}
    created = store.query("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() "
                          "AND name = 'flows'").rows[0][0]
    assert "toIntervalDay(7)" in created and "T64" in created  # its TTL kept, today's codecs
    assert store.query("SELECT count() FROM flows_1m").rows == [(0,)]  # the copy fed no view
    assert "flows_time_alias" not in store.migrate()


def test_rebuild_keeps_existing_rows_and_rolls_up_only_new_inserts(store, make_flows):
    from finsa.storage.schema import rebuild_flows

    store.migrate()
    store.insert(make_flows(6))
    before = store.query("SELECT count(), sum(src2dst_bytes), groupArraySorted(10)(first_seen) FROM flows").rows
    rebuild_flows(store)
    assert store.query("SELECT count(), sum(src2dst_bytes), groupArraySorted(10)(first_seen) FROM flows").rows == before
    assert store.query("SELECT sum(flows) FROM flows_1m").rows == [(6,)]  # the copy was not rolled up
    store.insert(make_flows(4))
    assert store.query("SELECT sum(flows) FROM flows_1m").rows == [(10,)]  # the views follow the swap
    assert store.query("SELECT count() FROM system.tables WHERE database = currentDatabase() "
                       "AND name = 'flows_rebuild'").rows == [(0,)]
