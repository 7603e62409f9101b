"""Type-check the packages under their installed names: ``python tools/typecheck.py [mypy args]``.

The source folders sit at the top of the tree (``core/``, ``collectors/``, ...) and pyproject's
``package-dir`` installs them as ``finsa``, ``finsa.collectors``, ...; the editable install finds
them through an import hook that tools reading the tree cannot run. This script builds the tree
those names describe out of symlinks, ``build/typecheck/finsa/`` (the core modules, then one link
per sub-package), and runs mypy on the package ``finsa`` there, with the settings of
``[tool.mypy]`` in pyproject.toml. Errors are reported against the real files (``core/wire.py``).

>>> sorted(package_links(ROOT).items())[:2]
[('finsa', 'core'), ('finsa.app', 'app')]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"


def package_links(root: Path) -> dict[str, str]:
    """finsa.* package -> its source folder, as pyproject's package-dir maps them."""
    return dict(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"])


def build_tree(root: Path = ROOT, tree: Path = TREE) -> Path:
    """(Re)build ``tree/finsa`` from symlinks to the source folders; returns ``tree``."""
    top = tree / "finsa"
    if top.exists():
        for entry in top.iterdir():
            entry.unlink()
    top.mkdir(parents=True, exist_ok=True)
    links = package_links(root)
    for source in sorted((root / links.pop("finsa")).glob("*.py")):
        (top / source.name).symlink_to(source.resolve())
    for package, folder in links.items():
        parts = package.split(".")
        if len(parts) != 2:  # nested packages live inside their parent's folder
            continue
        (top / parts[1]).symlink_to((root / folder).resolve(), target_is_directory=True)
    return tree


def real_path(line: str, links: dict[str, str]) -> str:
    """A mypy message about ``build/typecheck/finsa/...`` pointed at the source file instead.

    >>> real_path("build/typecheck/finsa/storage/backend.py:3: error: x", {"finsa": "core", "finsa.storage": "storage"})
    'storage/backend.py:3: error: x'
    >>> real_path("build/typecheck/finsa/wire.py:9: note: y", {"finsa": "core"})
    'core/wire.py:9: note: y'
    """
    prefix = "build/typecheck/finsa/"
    if not line.startswith(prefix):
        return line
    rest = line[len(prefix):]
    first = rest.split("/", 1)[0]
    folder = links.get(f"finsa.{first}") if "/" in rest.split(":", 1)[0] else None
    return f"{folder}/{rest.split('/', 1)[1]}" if folder else f"{links['finsa']}/{rest}"


def main(argv: list[str]) -> int:
    tree = build_tree()
    env = {**os.environ, "MYPYPATH": str(tree)}
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "-p", "finsa", *argv]
    done = subprocess.run(command, cwd=ROOT, env=env, check=False, capture_output=True, text=True)
    links = package_links(ROOT)
    for line in done.stdout.splitlines():
        print(real_path(line, links))
    print(done.stderr, end="", file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
