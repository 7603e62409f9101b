"""The ClickHouse columns are derived from the wire records, field by field."""

from __future__ import annotations

import pytest

from finsa.storage.native import native_block, string_column, varuint
from finsa.storage.schema import CLICKHOUSE_TYPES, column_sql, derived_columns, wire_columns
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
        assert col.codec.endswith("ZSTD(1)") and (not f.codec or col.codec.startswith(f.codec))
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
