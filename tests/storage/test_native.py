"""Property: any flow batch written through the Native payload reads back equal (chdb engine)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finsa.storage.backend import open_store
from finsa.wire import FLOW, ip_to_bytes

ip_text = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
u64 = st.integers(0, 2**64 - 1)
row = st.fixed_dictionaries({
    "flow_id": u64, "first_seen_ms": st.integers(0, 2**41), "src_ip": ip_text, "dst_ip": ip_text,
    "src_port": st.integers(0, 65535), "src2dst_bytes": u64, "institution_id": text, "http_uri": text,
    "tls_sni": text,
})


@pytest.fixture(scope="module")
def flows_store(engine):
    store = open_store(data_dir=engine.data_dir, database="prop")
    store.migrate()
    yield store
    store.command("DROP DATABASE prop SYNC")
    store.close()


def _canonical(ip: str) -> str:
    raw = ip_to_bytes(ip)
    return ".".join(map(str, raw[12:])) if raw[:12] == bytes(10) + b"\xff\xff" else ip


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row, min_size=1, max_size=20))
def test_any_flow_batch_reads_back_equal(flows_store, rows):
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    columns["flow_id"] = np.array(columns["flow_id"], dtype=np.uint64)
    columns["src2dst_bytes"] = np.array(columns["src2dst_bytes"], dtype=np.uint64)
    batch = FLOW.make_batch(columns)
    assert flows_store.insert(batch)
    names = list(rows[0])
    got = flows_store.query(f"SELECT {', '.join(names)} FROM flows WHERE batch_id = unhex({{b:String}})",
                            {"b": batch.batch_id_hex}).dicts()
    expected = [{**r, "src_ip": _canonical(r["src_ip"]), "dst_ip": _canonical(r["dst_ip"])} for r in rows]
    key = lambda d: sorted((k, str(v)) for k, v in d.items())  # noqa: E731 - the table re-sorts rows
    assert sorted(got, key=key) == sorted(expected, key=key)


def test_block_of_several_batches_equals_the_block_of_their_concatenation():
    from finsa.storage.native import native_block, native_block_of
    from finsa.wire import RecordBatch

    batches = [FLOW.make_batch({"flow_id": [i, i + 10], "institution_id": ["bank-a", f"b{i}"],
                                "tls_sni": ["", "x.example"], "src_ip": ["10.0.0.1", "::1"]}) for i in range(3)]
    joined = RecordBatch.concat(batches)
    expected = native_block(joined, [b.batch_id for b in batches], [len(b) for b in batches])
    assert native_block_of(batches) == expected


def test_string_column_encodes_equal_text_in_different_objects_and_one_shared_object():
    from finsa.storage.native import string_column

    shared = np.array(["bank-a"] * 4, dtype=object)
    assert string_column(shared) == b"\x06bank-a" * 4
    fresh = np.array(["".join(["g", "et"]) for _ in range(3)] + ["", None], dtype=object)
    assert string_column(fresh) == b"\x03get" * 3 + b"\x00\x00"
    assert string_column(np.array([], dtype=object)) == b""


def test_string_columns_go_low_cardinality_when_few_objects_and_string_when_many(flows_store):
    from finsa.object_codes import object_pointers as _object_pointers
    from finsa.storage.native import native_block_of, string_codes

    n = 70_000
    few = np.array(["bank-a", "".join(["bank", "-a"]), "bänk-ü", None] * (n // 4), dtype=object)
    many = np.array([f"/p/{i}" for i in range(n)], dtype=object)
    assert string_codes(_object_pointers(many)) is None
    codes, texts = string_codes(_object_pointers(few))
    assert sorted(texts) == ["", "bank-a", "bänk-ü"] and [texts[c] for c in codes[:4]] == ["bank-a", "bank-a", "bänk-ü", ""]
    batch = FLOW.make_batch({"flow_id": np.arange(n, dtype=np.uint64), "institution_id": few, "http_uri": many,
                             "tls_sni": few[::-1].copy()})
    payload = native_block_of([batch])[1]
    assert b"\x0einstitution_id\x16LowCardinality(String)" in payload and b"\x08http_uri\x06String" in payload
    assert flows_store.insert(batch)
    got = flows_store.query("SELECT flow_id, institution_id, http_uri, tls_sni FROM flows WHERE batch_id = unhex({b:String}) "
                            "ORDER BY flow_id", {"b": batch.batch_id_hex}).rows
    assert got == [(i, few[i] or "", many[i], few[n - 1 - i] or "") for i in range(n)]


def test_chunks_of_batches_that_start_with_an_empty_one_hold_the_other_rows():
    from finsa.storage.native import native_block_of, native_chunks_of

    empty = FLOW.make_batch({}, n_rows=0)
    batch = FLOW.make_batch({"institution_id": ["a", "b", "a"], "tls_sni": ["", "", ""]}, batch_id=bytes(16))
    names, chunks = native_chunks_of([empty, batch])
    assert names == native_block_of([batch])[0]
    assert b"".join(chunks) == native_block_of([batch])[1]  # the same block: no row lost, none twice
