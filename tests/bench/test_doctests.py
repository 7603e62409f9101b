"""The docstring examples of the bench modules run (their helpers compute the published figures)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["bigstore", "flows", "kafka_counts", "metering_digest", "pipeline", "pipeline_stages", "report",
           "rollups_before", "soak", "storage", "storage_fill", "synth", "thread_cpu"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
