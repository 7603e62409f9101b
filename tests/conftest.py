"""Shared test fixtures: where the public data is, and how a missing tool is reported.

In CI (``CI=true``) a missing system tool fails the test: nothing that CI must run is skipped.
Elsewhere it skips with the reason.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_tool(name: str) -> str:
    """Path of a system tool; fail in CI, skip elsewhere, when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make setup installs it with apt-get)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def shared_data(sub: str) -> Path:
    """A folder of ../shared/data; skip with the reason when it is absent."""
    path = SHARED_DATA / sub
    if not path.is_dir():
        pytest.skip(f"public data folder {path} is absent")
    return path
