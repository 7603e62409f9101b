"""docs/operations.md names only metrics the code registers; README and docs name only files and
finsa modules that exist (the tree moved in issue 13)."""

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


_DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_TOP = ("core", "collectors", "streams", "detectors", "storage", "dashboards", "sector", "scenario", "app",
        "tests", "deploy", "bench", "docs", "tools")
#: A repository path: a top folder, then a file with an extension or a folder ending in '/'.
_PATH = re.compile(r"(?<![\w./-])((?:%s)/(?:[\w-]+/)*(?:[\w-]+(?:\.\w+)+|))(?![\w/-])" % "|".join(_TOP))
#: finsa.<role or core module>[.<module>][.<name>] (database.table names and topics are not these).
_MODULE = re.compile(r"`(finsa(?:\.\w+)+)")


def test_readme_and_docs_name_existing_paths() -> None:
    named = [(doc.name, path) for doc in _DOCS for path in _PATH.findall(doc.read_text()) if "{" not in path]
    missing = [f"{doc}: {path}" for doc, path in named if not (REPO / path).exists()]
    assert len(named) > 50 and not missing, missing


def _is_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent is a module, not a package
        return False


def test_readme_and_docs_name_existing_modules() -> None:
    import importlib

    roles = set(SOURCES) - {"core"}
    core = {p.stem for p in (REPO / "core").glob("*.py")}
    wrong = []
    for doc in _DOCS:
        for name in _MODULE.findall(doc.read_text()):
            parts = name.split(".")
            if len(parts) < 2 or parts[1] not in roles | core:
                continue  # a table (finsa.flows) or a topic (finsa.flows.v1)
            depth = max(k for k in range(1, len(parts) + 1) if _is_module(".".join(parts[:k])))
            module = importlib.import_module(".".join(parts[:depth]))
            if depth < len(parts) - 1 or (depth == len(parts) - 1 and not hasattr(module, parts[-1])):
                wrong.append(f"{doc.name}: {name}")
    assert not wrong, wrong
