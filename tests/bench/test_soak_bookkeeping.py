"""The soak's own bookkeeping in the worker process is fixed-size: latencies go into a histogram,
so a one-hour run measures the worker's memory, not a list of 72 million latencies."""

from __future__ import annotations

import numpy as np

from bench.soak import BUCKET_MS, BUCKETS, _Latency
from finsa import wire


def _ended(ms_ago: list[int], now_ms: int) -> wire.RecordBatch:
    return wire.FLOW.make_batch({"last_seen_ms": np.asarray([now_ms - m for m in ms_ago], dtype=np.int64)})


def test_percentiles_come_from_a_fixed_histogram() -> None:
    import time

    latency = _Latency()
    now_ms = int(time.time() * 1000)
    latency.observe(_ended([5] * 98 + [2_000, 10_000_000], now_ms))
    assert latency.stored == 100 and latency.counts.shape == (BUCKETS,)
    assert latency.percentile_ms(50) < 1_000 <= latency.percentile_ms(99)  # 98 ended ms ago, 2 long ago
    assert latency.percentile_ms(100) == BUCKETS * BUCKET_MS  # beyond the range: the last bucket
    latency.observe(_ended([5] * 1000, now_ms))
    assert latency.counts.shape == (BUCKETS,) and latency.stored == 1100


def test_growth_between_the_halves_by_peak_median_and_mean() -> None:
    from bench.soak import halves_growth

    growth = halves_growth([100.0, 150.0, 110.0, 120.0, 130.0, 125.0])  # halves [100 150 110] [120 130 125]
    assert round(growth["peak"], 1) == -13.3  # 150 -> 130
    assert round(growth["median"], 1) == 13.6  # 110 -> 125
    assert round(growth["mean"], 1) == 4.2  # 120 -> 125


def test_worker_overrides_are_typed_and_unknown_names_refused() -> None:
    import pytest

    from bench.soak import worker_overrides

    assert worker_overrides("purge_store_after_group=0,group_max=8") == {"purge_store_after_group": False,
                                                                         "group_max": 8}
    with pytest.raises(SystemExit, match="bootstrap"):
        worker_overrides("bootstrap=1")
