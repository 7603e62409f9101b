"""The tree keeps the data flow: every product module's imports follow the table of allowed directions.

The data flows collectors -> Kafka -> streams (detectors, the sector picture) -> storage -> dashboards.
Each top-level product folder is one *role*; pyproject's ``package-dir`` maps it to its ``finsa.*``
name (``core/`` is ``finsa`` itself: the wire records, errors, metrics, settings, institutions that
every role shares). The table :data:`ALLOWED` says which other roles (or single modules) a role may
import, on top of its own modules and core:

====================  ==========================================================================
role                  may import (besides itself and core)
====================  ==========================================================================
collectors            nothing: agents run with the core only
detectors             nothing: a detector sees flows and settings, not where they come from
storage               nothing: it stores wire records
scenario              ``finsa.collectors.pcap.writer`` only (it writes the captures it generates)
sector                detectors, storage (the picture reads alerts and stores its rows)
streams               detectors, storage, sector (the Faust worker runs them)
dashboards            storage, sector (reads the store; the threat-level constants)
notify                nothing: it sends what the app layer hands it
app                   anything: whole programs wire the roles together
core                  nothing but core
====================  ==========================================================================

Nothing but the console entry point (``[project.scripts]``) imports ``finsa.app``; bench/ and tests/
may import anything (they are not scanned). Imports inside functions count, and so do module names
given to ``importlib.import_module`` as literal strings. Every product folder holds at most
:data:`MAX_MODULES_PER_FOLDER` modules directly: more means a sub-package hides in name prefixes.

>>> role_of("finsa.collectors.pcap.writer"), role_of("finsa.wire"), role_of("finsa")
('collectors', 'core', 'core')
>>> allowed("scenario", "finsa.collectors.pcap.writer"), allowed("scenario", "finsa.collectors.pcap.reader")
(True, False)
"""

from __future__ import annotations

import ast
import doctest
import functools
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: finsa.* package -> folder, as pyproject installs it.
PACKAGE_DIR: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
#: Role -> what it may import besides its own modules and core: a role name, or a dotted module.
ALLOWED: dict[str, tuple[str, ...]] = {
    "core": (),
    "collectors": (),
    "detectors": (),
    "storage": (),
    "scenario": ("finsa.collectors.pcap.writer",),
    "sector": ("detectors", "storage"),
    "streams": ("detectors", "storage", "sector"),
    "dashboards": ("storage", "sector"),
    "app": ("*",),
    "notify": (),
}
MAX_MODULES_PER_FOLDER = 25
ROLES = {pkg.removeprefix("finsa.") for pkg in PACKAGE_DIR if pkg != "finsa"}


@dataclass(frozen=True)
class Import:
    """One import statement of a product module: who imports what, where."""

    module: str  # the importing module, e.g. finsa.streams.processor
    target: str  # the imported module, e.g. finsa.storage.backend
    where: str  # folder/file.py:line


def role_of(module: str) -> str:
    """The role a ``finsa.*`` module belongs to: its first sub-package, or core for top modules."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROLES else "core"


def allowed(role: str, target: str) -> bool:
    """May a module of ``role`` import ``target`` (a ``finsa.*`` module)?"""
    target_role = role_of(target)
    if target_role in (role, "core"):
        return True
    for rule in ALLOWED[role]:
        if rule == "*" or rule == target_role or target == rule or target.startswith(rule + "."):
            return True
    return False


def _module_files() -> dict[str, Path]:
    """Every product module by its installed name (finsa.collectors.pcap.writer -> its file)."""
    modules: dict[str, Path] = {}
    for package, folder in PACKAGE_DIR.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if package == "finsa" and len(parts) > 1:
                continue  # core/ holds no sub-packages; guard against a stray folder
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


MODULES = _module_files()


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The finsa.* modules one AST node imports (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([node.module] if node.module else []))
        # `from finsa.collectors.pcap import writer` imports the module finsa.collectors.pcap.writer
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    if (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        return [node.args[0].value]
    return []


@functools.cache
def imports() -> list[Import]:
    """Every finsa.* import of every product module, including those inside functions."""
    found = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            for target in _targets(node, module, path.name == "__init__.py"):
                if target == "finsa" or target.startswith("finsa."):
                    where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
                    found.append(Import(module, target, where))
    return found


def test_the_table_names_every_role() -> None:
    assert set(ALLOWED) == ROLES | {"core"}, "a folder in package-dir needs its row in ALLOWED"
    assert PACKAGE_DIR["finsa"] == "core"


def test_the_scan_sees_imports_inside_functions_and_relative_ones() -> None:
    assert len(MODULES) > 100 and len(imports()) > 300
    tree = ast.parse("def f():\n    from . import x\n    import finsa.storage.backend\n")
    found = [t for n in ast.walk(tree) for t in _targets(n, "finsa.sector.picture", False)]
    assert found == ["finsa.sector", "finsa.storage.backend"]


def test_no_import_runs_against_the_allowed_directions() -> None:
    wrong = [f"{i.where}: {i.module} ({role_of(i.module)}) imports {i.target} ({role_of(i.target)})"
             for i in imports() if not allowed(role_of(i.module), i.target)]
    assert not wrong, "imports against the table in tests/test_architecture.py:\n" + "\n".join(wrong)


def test_only_the_console_entry_point_imports_the_app_layer() -> None:
    assert all(v.startswith("finsa.app.") for v in PYPROJECT["project"]["scripts"].values())
    assert not [i.where for i in imports() if role_of(i.target) == "app" and role_of(i.module) != "app"]


def test_a_role_seen_importing_against_the_flow_is_caught() -> None:
    assert not allowed("detectors", "finsa.collectors.idslogs.zeek")
    assert not allowed("collectors", "finsa.app.cli")
    assert not allowed("core", "finsa.storage.backend")
    assert not allowed("dashboards", "finsa.streams.processor")
    assert allowed("app", "finsa.dashboards.webview") and allowed("streams", "finsa.sector.picture")


@pytest.mark.parametrize("folder", sorted({p.parent for p in MODULES.values()}), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_product_folder_holds_more_than_25_modules(folder: Path) -> None:
    count = len(list(folder.glob("*.py")))
    assert count <= MAX_MODULES_PER_FOLDER, f"{folder.relative_to(ROOT)} holds {count} modules: split it"


def test_doctests() -> None:
    result = doctest.testmod(sys.modules[__name__], optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
