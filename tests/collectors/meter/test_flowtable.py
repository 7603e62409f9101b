"""flowtable: row gathers and scatters of 1-D and address columns, slot reuse after release."""

from __future__ import annotations

import numpy as np

from finsa.collectors.meter.flowtable import FlowTable, put_rows, take_rows


def test_take_and_put_rows_match_fancy_indexing() -> None:
    rng = np.random.default_rng(3)
    for col in (rng.integers(0, 255, (50, 16), dtype=np.uint8), rng.integers(0, 9, 50)):
        rows = rng.permutation(50)[:20]
        assert (take_rows(col, rows) == col[rows]).all()
        expected, got = col.copy(), col.copy()
        values = take_rows(col, rows[::-1])
        expected[rows] = values
        put_rows(got, rows, values)
        assert (got == expected).all()


def test_released_slots_hold_no_hints_when_reused() -> None:
    table = FlowTable(capacity=2)
    slots = table.allocate(np.array([5, 7], dtype=np.uint64))
    table.store(slots, {"hash": np.array([5, 7], dtype=np.uint64), "hinted": np.array([True, False]),
                        "dns_query": np.array(["a.example", None], dtype=object)})
    table.release(slots)
    again = table.allocate(np.array([9, 11], dtype=np.uint64))
    assert table.cols["dns_query"][again].tolist() == [None, None]
    assert table.lookup(np.array([5, 9, 11], dtype=np.uint64)).tolist() == [-1, *again.tolist()]
