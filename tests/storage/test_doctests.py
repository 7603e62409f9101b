"""The doctest examples of every storage module and every core module run (the Native encoding,
the key order, the object codes they share, the schema and migration helpers...)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ([f"finsa.storage.{m.name}" for m in pkgutil.iter_modules([str(ROOT / "storage")])]
           + [f"finsa.{m.name}" for m in pkgutil.iter_modules([str(ROOT / "core")])])


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0


def test_the_modules_were_found_and_hold_examples() -> None:
    assert {"finsa.storage.native", "finsa.storage.key_order", "finsa.object_codes", "finsa.wire"} <= set(MODULES)
    attempted = sum(doctest.testmod(importlib.import_module(n)).attempted
                    for n in ("finsa.storage.native", "finsa.object_codes"))
    assert attempted >= 8
