"""Run finsa as an unprivileged user (``nobody``) wherever the clone sits.

A clone in a folder only root may enter (mode 0700, as ``mktemp -d`` makes) hides both finsa and
the venv's packages from ``nobody``. :func:`nobody_python` then prepares, once per test process, a
copy that any user may read: a 0755 temporary folder holding the venv's ``site-packages`` (hard
links when on the same file system, else copies) without the editable-install hook, and the finsa
packages copied in as ``finsa.*`` (the ``package-dir`` map of pyproject.toml). When the clone and
the venv are readable already they are used as they are (``FINSA_TEST_COPY_INSTALL=1`` forces the
copy, to test it).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_LAUNCH = """import runpy, site, sys
site.addsitedir(sys.argv[1])
mode, target = sys.argv[2], sys.argv[3]
sys.argv = [target, *sys.argv[4:]]
if mode == "-m":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    exec(compile(target, "<test>", "exec"), {"__name__": "__main__"})
"""


def world_reachable(path: Path, mode_bit: int = 0o004) -> bool:
    """Any user may reach ``path`` (every folder above it o+x) and read or run it (``mode_bit``)."""
    real = Path(os.path.realpath(path))
    try:
        if not real.stat().st_mode & (0o001 if real.is_dir() else mode_bit):
            return False
        return all(p.stat().st_mode & 0o001 for p in real.parents)
    except OSError:
        return False


def venv_site() -> Path:
    return Path(next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)))


def interpreter() -> str | None:
    """This Python if any user may run it, else the system's of the same version (e.g. a pyenv
    Python under root's 0700 home); None when there is none."""
    for candidate in (sys.executable, f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"):
        if os.path.exists(candidate) and world_reachable(Path(candidate), 0o001):
            return candidate
    return None


def _copy_site(source: Path, target: Path) -> None:
    linked = subprocess.run(["cp", "-a", "--link", str(source), str(target)], capture_output=True)
    if linked.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, symlinks=True)
    for hook in target.glob("__editable__*"):
        hook.unlink()


def _copy_finsa(target: Path) -> None:
    package_dir = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(package_dir.items()):  # "finsa" first, then its sub-packages
        shutil.copytree(REPO / folder, target / package.replace(".", "/"), dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))


@functools.cache
def readable_site() -> Path:
    """A site-packages folder holding finsa and its dependencies that any user may read."""
    site = venv_site()
    if os.environ.get("FINSA_TEST_COPY_INSTALL") != "1" and world_reachable(REPO / "core" / "__init__.py") \
            and world_reachable(site / "numpy" / "__init__.py"):
        return site
    root = Path(tempfile.mkdtemp(prefix="finsa-readable-"))
    atexit.register(shutil.rmtree, root, True)
    root.chmod(0o755)
    target = root / "site-packages"
    _copy_site(site, target)
    _copy_finsa(target)
    subprocess.run(["chmod", "-R", "o+rX", str(root)], check=True)
    return target


def nobody_python(home: Path) -> list[str]:
    """``env HOME=home PYTHON -c LAUNCH SITE``: append ``-m module args`` or ``-c code``. The caller
    puts the privilege drop (setpriv) in front."""
    python = interpreter()
    if python is None:
        import pytest

        pytest.skip("no Python interpreter of this version that an unprivileged user may run")
    return ["env", f"HOME={home}", "PYTHONPATH=", "PYTHONDONTWRITEBYTECODE=1", python, "-c", _LAUNCH,
            str(readable_site())]
