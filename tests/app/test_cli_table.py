"""The command table: each command is loaded by a real import (visible to an import check), its
names and help are what ``finsa --help`` shows, a missing extra exits 3, and no command module
imports another command module."""

from __future__ import annotations

import argparse
import ast
import tomllib
from pathlib import Path

import pytest

from finsa.app import cli
from tests.conftest import REPO

PACKAGE_DIR = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]


def _file_of(module: str) -> Path:
    """The source file of a ``finsa.*`` module, read from the tree (package-dir map)."""
    package, _, name = module.rpartition(".")
    while package not in PACKAGE_DIR:
        package, _, parent = package.rpartition(".")
        name = f"{parent}.{name}"
    return REPO / PACKAGE_DIR[package] / (name.replace(".", "/") + ".py")


def _loaded_modules() -> dict[str, str]:
    """command -> the module its loader imports, read from cli.py's source."""
    tree = ast.parse(Path(cli.__file__).read_text())
    loaders = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    out = {}
    for name, (load, _) in cli.COMMANDS.items():
        imports = [n for n in ast.walk(loaders[load.__name__]) if isinstance(n, ast.ImportFrom)]
        assert len(imports) == 1, f"{name}: its loader must import exactly one module"
        out[name] = f"{imports[0].module}.{imports[0].names[0].name}"
    return out


def test_every_loader_imports_its_command_module_by_a_real_import() -> None:
    modules = _loaded_modules()
    assert list(modules) == ["run", "worker", "flows", "collect", "scenario", "detect", "eval", "backtest", "query",
                             "storage", "notify", "allowlist", "detectors", "dashboards", "report"]
    for name, module in modules.items():
        assert _file_of(module).is_file(), f"{name}: {module} has no source file"
        assert cli.COMMANDS[name][0]().__name__ == module


def test_no_command_module_imports_another() -> None:
    commands = set(_loaded_modules().values())
    for module in commands:
        tree = ast.parse(_file_of(module).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                     for a in n.names}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not (imported & (commands - {module})), f"{module} imports {sorted(imported & commands)}"


def test_a_missing_extra_exits_3_naming_the_package(monkeypatch, capsys) -> None:
    def missing():
        raise ModuleNotFoundError("No module named 'faust'", name="faust")

    monkeypatch.setitem(cli.COMMANDS, "worker", (missing, "x"))
    assert cli.main(["worker", "--help"]) == 3
    assert "needs the Python package 'faust'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(cli.LONG_RUNNING))
def test_every_long_running_command_takes_a_drain_bound(name: str) -> None:
    parser = argparse.ArgumentParser()
    cli.COMMANDS[name][0]().add_arguments(parser)
    assert "--drain-timeout" in parser._option_string_actions
