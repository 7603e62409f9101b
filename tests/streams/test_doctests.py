"""The docstring examples of the stream modules run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["broker", "broker_gate", "faust_app", "feedback", "gate_acl", "held_flows", "memory_return", "processor",
           "progress", "scram", "service"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(f"finsa.streams.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
