"""The docstring examples of the detector modules run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["base", "netsets", "baseline", "dnsnames", "dnstunnel", "beaconing", "exfiltration", "lateral", "webattack", "intel", "registry",
           "portscan", "synflood", "bruteforce", "probescan", "floods.volumetric", "floods.reflection", "floods.victims", "payload.detector"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(f"finsa.detectors.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
