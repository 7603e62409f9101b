"""The storage benchmark: bounded generation, every panel timed (raw twin beside), bytes per flow.

No timing is asserted: only that the load is complete and every panel has a row with numbers.
"""

from __future__ import annotations

import re

import numpy as np

from bench.storage import flow_batches, run, tables_read
from bench.storage_fill import sector_batches


def test_flow_batches_cover_n_flows_in_time_order_with_unique_ids():
    batches = list(flow_batches(2_500, 1_000))
    assert [len(b) for b in batches] == [1_000, 1_000, 500]
    ids = np.concatenate([b.columns["flow_id"] for b in batches])
    assert len(np.unique(ids)) == 2_500
    starts = [b.columns["first_seen_ms"] for b in batches]
    assert all(a.max() <= b.min() for a, b in zip(starts, starts[1:]))


def test_tables_read_follows_from_and_join():
    assert tables_read("SELECT a FROM alerts FINAL LEFT JOIN institutions AS i ON 1 WHERE x IN "
                       "(SELECT y FROM warnings)") == ["alerts", "institutions", "warnings"]


def test_sector_batches_have_rows_for_every_table():
    assert {table: len(b) for table, b in sector_batches(7).items()} == dict.fromkeys(
        ["campaigns", "warnings", "threat_levels", "emergencies", "heartbeats"], 7)


def test_tiny_run_times_every_panel_and_reports_bytes_per_flow():
    from finsa.dashboards.panels import ALL_PANELS, WEB_PANELS

    text = "\n\n".join(run(quick=True, flows=6_000, batch_rows=1_000, write_batches=3))
    assert re.search(r"^finsa\s+6,000\s+cpu\b", text, re.MULTILINE)
    for panel in {p.id: p for p in (*ALL_PANELS, *WEB_PANELS)}.values():
        line = re.search(rf"^{panel.id}\s+(.*)$", text, re.MULTILINE)
        assert line and "not loaded" not in line.group(1), panel.id
        if getattr(panel, "raw_sql", ""):
            assert len(re.findall(r"\b\d+\.\d\b", line.group(1))) == 8, panel.id  # 4 roll-up + 4 raw
    per_flow = float(re.search(r"flows ([0-9.]+) B/flow", text).group(1))
    assert 0 < per_flow < 200
