"""Hot reload: a changed valid file is handed on, an invalid one is refused once and the old kept."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from finsa.detectors.config import Config
from finsa.detectors.engine import DetectionEngine
from finsa.detectors.registry import DEFAULT_NAMES
from finsa.detectors.reload import ConfigWatcher
from finsa.errors import ConfigError
from finsa.metrics import REGISTRY

RELOADS = REGISTRY.get("finsa_detector_config_reloads_total")


def write(path: Path, text: str, bump_ns: int = 0) -> None:
    """Write and move the mtime forward explicitly: coarse file-system clocks must not hide a change."""
    path.write_text(text)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump_ns))


@pytest.fixture
def setup(tmp_path: Path):
    path = tmp_path / "detectors.toml"
    write(path, "[detectors.portscan]\nmin_ports = 30\n")
    seen: list[Config] = []
    watcher = ConfigWatcher(path, seen.append)
    watcher.load()
    return path, watcher, seen


def counts() -> dict[str, float]:
    return {o: RELOADS.value(outcome=o) for o in ("applied", "invalid", "unreadable", "failed")}


def test_a_valid_change_is_handed_on(setup) -> None:
    path, watcher, seen = setup
    before = counts()
    assert watcher.poll() is False and seen == []
    write(path, "[detectors.portscan]\nmin_ports = 40\n", bump_ns=10**9)
    assert watcher.poll() is True
    assert [c.detectors["portscan"].params["min_ports"] for c in seen] == [40]
    assert watcher.current is seen[0] and counts()["applied"] == before["applied"] + 1
    assert watcher.poll() is False


def test_a_comment_or_a_touch_is_not_a_change(setup) -> None:
    path, watcher, seen = setup
    write(path, path.read_text(), bump_ns=10**9)
    assert watcher.poll() is False
    write(path, "# tuned on Monday\n" + path.read_text(), bump_ns=2 * 10**9)
    assert watcher.poll() is False and seen == []


def test_an_invalid_file_is_logged_once_counted_and_the_running_config_kept(setup, caplog) -> None:
    path, watcher, seen = setup
    running = watcher.current
    before = counts()
    write(path, "[detectors.portscan]\nmin_ports = 1\ncolour = 'red'\n", bump_ns=10**9)
    with caplog.at_level(logging.ERROR, logger="finsa.detectors.reload"):
        assert watcher.poll() is False
        write(path, path.read_text(), bump_ns=2 * 10**9)  # touched again, same content
        assert watcher.poll() is False
    assert seen == [] and watcher.current is running
    assert watcher.last_problems == ["detectors.portscan.colour: unknown key",
                                     "detectors.portscan.min_ports: 1 not in [2, 65536]"]
    assert len(caplog.records) == 1
    assert "colour: unknown key" in caplog.text and "min_ports: 1 not in" in caplog.text
    assert counts()["invalid"] == before["invalid"] + 1
    write(path, "[detectors.portscan]\nmin_ports = 25\n", bump_ns=3 * 10**9)  # fixed
    assert watcher.poll() is True and seen[-1].detectors["portscan"].params["min_ports"] == 25
    assert watcher.last_problems == []


def test_a_vanished_file_keeps_the_running_config(setup) -> None:
    path, watcher, seen = setup
    before = counts()
    path.unlink()
    assert watcher.poll() is False and watcher.poll() is False
    assert counts()["unreadable"] == before["unreadable"] + 1 and watcher.current is not None
    write(path, "[detectors.portscan]\nmin_ports = 35\n")
    assert watcher.poll() is True and seen[-1].detectors["portscan"].params["min_ports"] == 35


def test_a_failing_consumer_keeps_the_running_config(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    write(path, "")

    def refuse(cfg: Config) -> None:
        raise RuntimeError("cannot apply")
    watcher = ConfigWatcher(path, refuse)
    running = watcher.load()
    before = counts()
    write(path, "[detectors.portscan]\nmin_ports = 40\n", bump_ns=10**9)
    assert watcher.poll() is False and watcher.current is running
    assert counts()["failed"] == before["failed"] + 1


def test_load_refuses_an_invalid_file_at_start_up(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    write(path, "[detectors.nosuch]\n")
    with pytest.raises(ConfigError, match="detectors.nosuch: unknown key"):
        ConfigWatcher(path, lambda cfg: None).load()
    with pytest.raises(ConfigError, match="cannot read"):
        ConfigWatcher(tmp_path / "missing.toml", lambda cfg: None).load()


def test_the_watcher_thread_reconfigures_an_engine(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    write(path, "")
    engine = DetectionEngine()
    changed = threading.Event()

    def apply(cfg: Config) -> None:
        engine.reconfigure(cfg)
        changed.set()
    watcher = ConfigWatcher(path, apply, interval_s=0.01)
    engine.reconfigure(watcher.load())
    watcher.start()
    try:
        write(path, "[detectors.anomaly]\nenabled = false\n", bump_ns=10**9)
        assert changed.wait(30), "the watcher never saw the change"
    finally:
        watcher.stop()
    assert [d.name for d in engine.detectors] == [n for n in DEFAULT_NAMES if n != "anomaly"]


def test_with_a_registry_an_unknown_institution_is_refused(tmp_path: Path) -> None:
    from finsa.institutions import parse_registry

    registry = parse_registry({"institution": [{"id": "bank-a", "name": "A", "subsector": "bank"}]})
    path = tmp_path / "d.toml"
    write(path, "[overrides.institution.bank-a.portscan]\nmin_ports = 30\n")
    seen: list[Config] = []
    watcher = ConfigWatcher(path, seen.append, registry=registry)
    watcher.load()
    write(path, "[overrides.institution.bank-q.portscan]\nmin_ports = 30\n", bump_ns=10**9)
    assert watcher.poll() is False and seen == []
    assert watcher.last_problems == ["overrides.institution.bank-q: unknown institution (not in the registry)"]
