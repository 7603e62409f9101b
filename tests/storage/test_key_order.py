"""Flow blocks sent in the flows key order: the same rows, in exactly the order the engine keeps."""

from __future__ import annotations

import numpy as np
import pytest

from finsa.storage.key_order import flows_key_order, sorted_chunks_of
from finsa.storage.native import native_block_of
from finsa.wire import FLOW


def _batches(ipv6: bool) -> list:
    rng = np.random.default_rng(3)
    out = []
    for k in range(3):
        n = 2_000
        inst = np.array(["bank-a", "Bank-b", "bänk-c", "bank-a2", ""], dtype=object)[rng.integers(0, 5, n)]
        src = [f"10.{a % 7}.{a // 256 % 256}.{a % 256}" for a in rng.integers(0, 300, n)]  # many ties within a minute
        if ipv6:
            src = [s if i % 3 else f"2001:db8::{i:x}" for i, s in enumerate(src)]
        out.append(FLOW.make_batch({
            "flow_id": np.arange(n, dtype=np.uint64) + k * n, "institution_id": inst,
            "first_seen_ms": 1_700_000_000_000 + rng.integers(0, 600_000, n), "src_ip": src,
            "http_method": np.array(["GET", "POST", ""])[rng.integers(0, 3, n)],  # fresh objects per row
            "http_uri": [f"/p/{i}" for i in rng.integers(0, 100_000, n)],  # too many objects for codes
            "tls_sni": np.array(["a.example", ""], dtype=object)[rng.integers(0, 2, n)]}))
    return out


@pytest.mark.parametrize("ipv6", [False, True])
def test_flows_are_stored_in_the_order_sent_and_equal_to_the_unsorted_block(migrated, ipv6):
    batches = _batches(ipv6)
    order = flows_key_order(batches)
    sent = np.concatenate([b.columns["flow_id"] for b in batches])[order].tolist()
    names, chunks = sorted_chunks_of(batches, order)
    migrated.command("CREATE TABLE IF NOT EXISTS plain AS flows")
    migrated.command("TRUNCATE TABLE plain")
    with migrated._lock:
        migrated._insert_bytes("flows", names, chunks, "Native", {"insert_deduplicate": "0"})
        migrated._insert_bytes("plain", *native_block_of(batches), "Native", {"insert_deduplicate": "0"})
    # one part per day: the engine kept the rows as sent, so they were in its own key order
    stored = migrated.query("SELECT flow_id FROM flows ORDER BY _partition_id, _part_offset").rows
    assert [r[0] for r in stored] == sent
    # and the engine, sorting the unsorted block itself, stores the rows in that same order (ties too)
    assert migrated.query("SELECT flow_id FROM plain ORDER BY _partition_id, _part_offset").rows == stored
    columns = "flow_id, institution_id, first_seen_ms, src_ip, http_method, http_uri, tls_sni, batch_id"
    same = f"SELECT {columns} FROM {{}} ORDER BY flow_id"
    assert migrated.query(same.format("flows")).rows == migrated.query(same.format("plain")).rows
    assert len(stored) == 6_000


def test_an_empty_batch_first_and_text_columns_not_of_objects_are_stored_as_given(migrated):
    """A group may start with an empty batch, and a column may hold numpy strings rather than
    objects: both are encoded from the rows that exist, each text read while its array lives."""
    batches = _batches(False)
    batches[1].columns["institution_id"] = batches[1].columns["institution_id"].astype(str)  # '<U' array
    batches[2].columns["tls_sni"] = batches[2].columns["tls_sni"].astype(str)
    empty = FLOW.make_batch({}, n_rows=0)
    migrated.command("TRUNCATE TABLE flows")
    migrated.command("TRUNCATE TABLE ingested_batches")
    assert migrated.insert_many([empty, *batches]) == 4
    expected = sorted((int(f), str(i), str(s)) for b in batches for f, i, s in
                      zip(b.columns["flow_id"], b.columns["institution_id"], b.columns["tls_sni"]))
    stored = migrated.query("SELECT flow_id, institution_id, tls_sni FROM flows ORDER BY flow_id").rows
    assert [tuple(r) for r in stored] == expected


@pytest.mark.parametrize("span_ms", [600_000, 2**41])  # minutes + rows fit in one 64-bit key with the row number, or not
def test_the_order_is_the_stable_order_of_the_key_ties_in_arrival_order(span_ms):
    """Whichever way the order is computed (keys made distinct by their row number and sorted, or
    a stable argsort), it is the stable sort by (institution's bytes, minute, source): ties keep
    the order they came in."""
    rng = np.random.default_rng(11)
    n = 5_000
    inst = np.array(["b", "a", "c"], dtype=object)[rng.integers(0, 3, n)]
    first = 1_700_000_000_000 + rng.integers(0, span_ms, n)
    host = rng.integers(0, 40, n)  # many equal keys
    batch = FLOW.make_batch({"institution_id": inst, "first_seen_ms": first,
                             "src_ip": [f"10.0.0.{h}" for h in host.tolist()]})
    minute = first // 60_000
    expected = np.lexsort((np.arange(n), host, minute, np.searchsorted(["a", "b", "c"], inst.astype(str))))
    assert flows_key_order([batch]).tolist() == expected.tolist()
