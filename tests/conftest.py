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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules that start services (any test marked ``integration``) run first, in their own order,
    except :data:`RUN_LAST`.

    ``make test`` runs the suite on two xdist workers, one module at a time per worker
    (``--dist loadscope --no-loadscope-reorder``: a module's fixtures are built once). The long
    modules start first and the many short unit modules fill in at the end, instead of one
    worker running the last long module alone. The order within a module is unchanged.
    """
    def module_of(item: pytest.Item) -> str:
        return item.nodeid.split("::", 1)[0]

    starts_services = {module_of(i) for i in items if i.get_closest_marker("integration") is not None}

    def rank(item: pytest.Item) -> int:
        module = module_of(item)
        return 2 if module in RUN_LAST else 0 if module in starts_services else 1

    items.sort(key=rank)  # stable: the order within each rank is kept


#: Modules given out last, when the other worker has (nearly) nothing left: the end-to-end `finsa run`
#: replays the scenario at 5x, and which alerts it raises depends on how its batches group under CPU
#: contention (one xdist run missed the exfiltration alert while another `finsa run` started beside it).
RUN_LAST = frozenset({"tests/app/test_end_to_end.py"})


@pytest.fixture(scope="session")
def default_scenario(tmp_path_factory):
    """The default scenario (every attack type, seed 7), generated once per test process.

    Shared by every module that reads it (about 5 s each time it is generated): read it, never
    write into its folder.
    """
    from finsa.scenario.generator import generate_scenario

    return generate_scenario(tmp_path_factory.mktemp("default-scenario"), seed=7)


@pytest.fixture(scope="session")
def sector_scenario(tmp_path_factory):
    """The default sector scenario (an hour, five payment institutions), generated once per test
    process; read it, never write into its folder."""
    from finsa.scenario.generator import generate_scenario

    return generate_scenario(tmp_path_factory.mktemp("sector-scenario"), attack_set="sector")
