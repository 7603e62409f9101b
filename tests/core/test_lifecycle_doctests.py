"""The doctest examples of the lifecycle modules run: the one shutdown path, the one file watcher,
worker progress, the stream-worker builder and its strict config, the agent's sources."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["finsa.lifecycle", "finsa.watch", "finsa.streams.progress", "finsa.app.stream_worker",
           "finsa.app.worker_config", "finsa.collectors.agent.sources", "finsa.detectors.reload"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0


def test_a_watched_file_that_vanishes_is_reported_once_and_its_return_applied(tmp_path) -> None:
    from finsa.watch import FileWatcher

    path = tmp_path / "x.txt"
    path.write_text("1")
    seen, errors, outcomes = [], [], []
    watcher = FileWatcher(path, lambda p: int(p.read_text()), seen.append, on_error=errors.append,
                          on_outcome=outcomes.append)
    assert watcher.load_now() == 1
    path.unlink()
    assert watcher.poll() is False and watcher.poll() is False
    assert len(errors) == 1 and outcomes == ["unreadable"] and watcher.current == 1
    path.write_text("7")
    assert watcher.poll() is True and seen == [7] and outcomes == ["unreadable", "applied"]
