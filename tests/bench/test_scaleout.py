"""The scale-out step of ``bench scaleout``: two ``finsa worker`` processes in one consumer group
on a 4-partition flow topic (Tansu), writing to one chdb store served over the ClickHouse HTTP
interface by a third process, store every flow exactly once. No timing is asserted."""

from __future__ import annotations

import pytest

from bench.scaleout import measure


@pytest.mark.integration
def test_two_workers_store_every_flow_exactly_once():
    result = measure(workers=2, flows=30_000, deadline_s=90)
    assert result["sent"] == 30_000
    assert result["stored"] == result["distinct"] == 30_000, result
