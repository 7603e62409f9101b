"""The examples in the dashboards modules' docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["threat", "panels", "sectormap", "page", "webview", "soc.agent_link"])
def test_docstring_examples(name):
    module = importlib.import_module(f"finsa.dashboards.{name}")
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
