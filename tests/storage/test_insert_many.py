"""Grouped writes: several batches in one write stay idempotent per batch id."""

from __future__ import annotations

import numpy as np
import pytest

from finsa import wire
from finsa.storage.backend import open_store


def _flows(n: int, port: int) -> wire.RecordBatch:
    return wire.FLOW.make_batch({"dst_port": [port] * n, "institution_id": ["bank-a"] * n,
                                 "first_seen_ms": 1_770_000_000_000 + np.arange(n)})


@pytest.fixture
def store(tmp_path):
    s = open_store(data_dir=tmp_path / "store")
    s.migrate()
    yield s
    s.close()


def test_group_write_keeps_each_rows_batch_id_and_skips_known_batches(store) -> None:
    a, b, c = _flows(3, 1), _flows(4, 2), _flows(5, 3)
    assert store.insert(a) is True
    assert store.insert_many([a, b, c, b]) == 2  # a known, b given twice
    assert store.insert_many([c, b]) == 0
    rows = store.query("SELECT hex(batch_id) AS id, dst_port, count() AS n FROM flows GROUP BY id, dst_port").dicts()
    got = {(r["id"].lower(), r["dst_port"], r["n"]) for r in rows}
    assert got == {(a.batch_id.hex(), 1, 3), (b.batch_id.hex(), 2, 4), (c.batch_id.hex(), 3, 5)}
    assert store.query("SELECT sum(flows) FROM flows_1m").rows[0][0] == 12


def test_group_write_refuses_mixed_record_types(store) -> None:
    from finsa.errors import StorageError

    with pytest.raises(StorageError):
        store.insert_many([_flows(1, 1), wire.ALERT.make_batch({"severity": [1]})])


def test_flows_stored_before_a_crash_lost_their_ledger_rows_are_not_stored_again(store) -> None:
    # A worker killed after the flows write and before the ledger write gets the group again,
    # regrouped with other batches (another deduplication token): the table itself is asked.
    a, b, c = _flows(3, 1), _flows(4, 2), _flows(5, 3)
    assert store.insert_many([a, b]) == 2
    store.command("TRUNCATE TABLE ingested_batches")  # the ledger write that never happened
    assert store.insert_many([b, c, a]) == 1  # only c is new
    assert store.query("SELECT count() FROM flows").rows[0][0] == 12
    ledger = store.query("SELECT count(), uniqExact(batch_id) FROM ingested_batches").rows[0]
    assert tuple(ledger) == (3, 3)  # a and b recorded now, c as it was written
    assert store.insert_many([a, b, c]) == 0
