"""Smoke tests of the benchmark harness: it runs, prints ratio tables, and its tools agree.

No timing is asserted: only that the tables are there and that each tool meters the same flows.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_wire_quick_prints_ratio_tables():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "bench", "wire", "--quick"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ratio to finsa" in proc.stdout
    assert re.search(r"^finsa\s+10,000\s+cpu\s+\S+\s+\S+\s+1\.00\b", proc.stdout, re.MULTILINE)
    assert re.search(r"^json lines\s+10,000\s+cpu\s+\S+\s+\S+\s+\d+\.\d\d\b", proc.stdout, re.MULTILINE)


def test_unknown_part_is_refused():
    proc = subprocess.run([sys.executable, "-m", "bench", "nonsense"], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    assert proc.returncode == 2


def test_synthetic_capture_gives_the_same_flows_to_finsa_and_dpkt(tmp_path):
    pytest.importorskip("dpkt")
    from bench import meters, synth

    path = str(synth.mixed_capture(3_000, seed=2, cache_dir=tmp_path))
    n, dpkt_flows, table = meters.dpkt_meter(path)
    _, finsa_flows, _ = meters.finsa_meter(path)
    assert n == synth.count_packets(path) == 3_000
    assert finsa_flows == dpkt_flows > 200
    hints = {f["hint"] for f in table.values()}
    assert b"www.bank-a.example" in hints or "www.bank-a.example" in hints


def test_distinct_capture_holds_one_flow_per_packet(tmp_path):
    from bench import meters, synth

    path = str(synth.distinct_capture(5_000, cache_dir=tmp_path))
    packets, held, meter = meters.finsa_table(path)
    assert packets == held == 5_000
