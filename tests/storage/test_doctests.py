"""The doctest examples of every storage module run (the Native encoding, the key order, the
schema and migration helpers...); ``audit``'s run in tests/storage/test_audit.py."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = [f"finsa.storage.{m.name}" for m in pkgutil.iter_modules([str(ROOT / "storage")]) if m.name != "audit"]
#: Modules that must hold examples (a sweep that found none would pass on nothing).
WITH_EXAMPLES = {"finsa.storage.native", "finsa.storage.key_order", "finsa.storage.search_index"}


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and (result.attempted > 0 or name not in WITH_EXAMPLES)
    assert WITH_EXAMPLES <= set(MODULES)
