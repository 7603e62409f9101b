"""The doctest examples of the core modules no other test runs them for (the wire records, the
object codes, batch signing, errors, metrics, settings)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["finsa.wire", "finsa.object_codes", "finsa.batchauth", "finsa.errors", "finsa.metrics", "finsa.settings"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
