"""Smoke test of ``python -m bench pipeline --quick``: the whole embedded pipeline runs once and
prints its tables (real captures -> agent -> Tansu -> worker -> chdb), with one agent process and
with two (each metering half of the institutions). No timing is asserted:
only that flows were sent and every one of them became queryable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
@pytest.mark.parametrize("agents", [1, 2])
def test_pipeline_quick_stores_every_flow_it_sent(agents: int):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "bench", "pipeline", "--quick", "--agents", str(agents)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = re.search(r"^\s+2,000\s+([\d,]+)\s+([\d,]+)\s", proc.stdout, re.MULTILINE)
    assert row, proc.stdout
    sent, stored = (int(v.replace(",", "")) for v in row.groups())
    assert sent > 0 and stored == sent
    assert "CPU share per stage" in proc.stdout and "broker (Tansu)" in proc.stdout
    assert f"{agents} agent(s): " in proc.stdout  # one line of figures per agent process
