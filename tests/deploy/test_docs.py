"""docs/operations.md names only metrics the code registers; docs/deployment.md names the files."""

from __future__ import annotations

import re

from tests.conftest import REPO

SOURCES = ["core", "collectors", "streams", "detectors", "storage", "dashboards", "sector", "scenario", "app", "notify"]


def _registered() -> set[str]:
    names = set()
    for folder in SOURCES:
        for path in (REPO / folder).rglob("*.py"):
            names |= set(re.findall(r'REGISTRY\.(?:counter|gauge)\(\s*"(finsa_[a-z0-9_]+)"', path.read_text()))
    return names


def test_operations_metrics_exist() -> None:
    text = (REPO / "docs" / "operations.md").read_text().split("## What to watch", 1)[1]
    named = set(re.findall(r"`(finsa_[a-z0-9_]+)", text))
    assert named and named <= _registered(), named - _registered()


def test_deployment_doc_names_existing_files() -> None:
    text = (REPO / "docs" / "deployment.md").read_text()
    for path in re.findall(r"`(deploy/[\w./-]+|storage/[\w.]+)`", text):
        if "{" not in path:
            assert (REPO / path).exists(), path
