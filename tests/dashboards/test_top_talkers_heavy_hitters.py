"""Top talkers from the heavy-hitter roll-ups (``talkers_top_1h``, 1,024 counters a state) on
skewed traffic with far more sources than counters: the panel's ten are the raw twin's ten,
flows and bytes exact (the heavy hitters stand out; uniform sources would not, see
docs/benchmarks.md "rollups after")."""

from __future__ import annotations

import numpy as np

from finsa.dashboards.panels import ALL_PANELS_BY_ID, bind
from finsa.storage.backend import open_store
from finsa.wire import FLOW, ipv4_to_mapped

HOUR_MS = 3_600_000
START_MS = 1_772_442_000_000  # 2026-03-02T09:00:00Z, an hour boundary


def _skewed_flows(rng: np.random.Generator, n: int, first_id: int) -> object:
    src = (10 << 24) + rng.zipf(1.1, n).clip(1, 60_000)
    first = START_MS + rng.integers(0, HOUR_MS, n)
    return FLOW.make_batch({
        "flow_id": np.arange(first_id, first_id + n), "first_seen_ms": first, "last_seen_ms": first + 10,
        "institution_id": np.array(["bank-a", "bank-b"], dtype=object)[rng.integers(0, 2, n)], "sensor_id": "s1",
        "ip_version": 4, "protocol": 6, "src_ip": ipv4_to_mapped(src.astype(np.uint32)),
        "dst_ip": ipv4_to_mapped(np.full(n, (198 << 24) + (51 << 16) + 1, dtype=np.uint32)), "src_port": 40000,
        "dst_port": 443, "src2dst_packets": 1, "src2dst_bytes": rng.integers(40, 5000, n), "dst2src_packets": 1,
        "dst2src_bytes": rng.integers(0, 90_000, n)})


def test_heavy_hitter_top_talkers_match_the_raw_twin_on_skewed_traffic():
    rng = np.random.default_rng(3)
    panel = ALL_PANELS_BY_ID["top_talkers"]
    with open_store(data_dir=None) as store:
        store.migrate()
        for k in range(3):  # three inserts: states merged across parts and institutions
            store.insert(_skewed_flows(rng, 100_000, 1 + k * 100_000))
        sources = store.query("SELECT uniqExact(institution_id, src_ip) FROM flows").rows[0][0]
        assert sources > 10 * 1024  # far more sources per state than counters: approximate regime
        for institution in ("", "bank-b"):
            values = {"from_ms": str(START_MS), "to_ms": str(START_MS + HOUR_MS - 1), "institution": institution}
            params = bind(panel, {k: v for k, v in values.items() if v}, START_MS + HOUR_MS)
            got, raw = store.query(panel.sql, params).rows, store.query(panel.raw_sql, params).rows
            assert len(raw) == 10 and got == raw, institution
