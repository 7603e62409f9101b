"""The examples in the docstrings of the security modules run."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["finsa.streams.scram", "finsa.streams.broker_gate", "finsa.streams.broker"])
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
