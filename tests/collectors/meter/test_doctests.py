"""The doctest examples of the metering modules run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["pcap.capture", "pcap.frames", "meter.decode", "meter.profiles", "meter.flowmeter", "meter.app_hints",
           "meter.tls_hello", "meter.payload_candidates", "meter.same_payloads", "meter.flow_lists", "meter.flowtable",
           "meter.payload_marks", "compiled", "meter.linklayer", "meter.key_hash", "meter.isin", "meter.row_merge", "meter.segment_sums", "meter.key_sort",
           "csv_rows", "flows_command"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(f"finsa.collectors.{name}")
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0
