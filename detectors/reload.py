"""Hot reload of the detectors file: a changed file is validated before it replaces the running one.

:class:`ConfigWatcher` polls the file's modification time and size, and on a change its content
hash (no extra dependency, works on any file system). New content is validated; a valid config is
handed to ``on_change`` (e.g. ``engine.reconfigure``); an invalid one is logged **once** with every
problem and the running config is kept. Every attempt is counted in
``finsa_detector_config_reloads_total{outcome}`` with outcome ``applied``, ``invalid``,
``unreadable`` (the file vanished or cannot be read) or ``failed`` (``on_change`` raised). A
change that leaves the config equal (a comment edited) is not handed on.

Use :meth:`ConfigWatcher.load` once at start-up (an invalid file there is an error: raise it),
then either call :meth:`ConfigWatcher.poll` from your own loop or :meth:`ConfigWatcher.start` a
daemon thread polling every ``interval_s``.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "detectors.toml")
>>> _ = open(path, "w").write("[detectors.portscan]\\nmin_ports = 30\\n")
>>> seen = []
>>> watcher = ConfigWatcher(path, seen.append)
>>> watcher.load().detectors["portscan"].params["min_ports"]
30
>>> watcher.poll()  # unchanged
False
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Callable

from finsa.detectors.config import Config, load_detectors_config
from finsa.errors import ConfigError
from finsa.metrics import REGISTRY
from finsa.institutions import Registry

__all__ = ["ConfigWatcher"]

RELOADS = REGISTRY.counter("finsa_detector_config_reloads_total",
                           "Detector config file changes seen, by outcome", ["outcome"])
log = logging.getLogger("finsa.detectors.reload")
_GONE = b"unreadable"  # the digest recorded while the file cannot be read


class ConfigWatcher:
    """Watches one detectors file; see the module docstring."""

    def __init__(self, path: str | Path, on_change: Callable[[Config], None], interval_s: float = 2.0,
                 registry: Registry | None = None) -> None:
        self.path = Path(path)
        self.on_change = on_change
        self.interval_s = float(interval_s)
        self.registry = registry
        self.current: Config | None = None
        self.last_problems: list[str] = []
        self._stat: tuple[int, int] | None = None
        self._digest: bytes | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> tuple[tuple[int, int], bytes]:
        st = os.stat(self.path)
        return (st.st_mtime_ns, st.st_size), hashlib.blake2b(self.path.read_bytes(), digest_size=16).digest()

    def load(self) -> Config:
        """Read and validate the file now (ConfigError when invalid); it becomes the running config."""
        try:
            stat, digest = self._read()
        except OSError as exc:
            raise ConfigError(str(self.path), [f"cannot read: {exc.strerror or exc}"]) from None
        self.current = load_detectors_config(self.path, self.registry)
        self._stat, self._digest, self.last_problems = stat, digest, []
        return self.current

    def poll(self) -> bool:
        """Look once; True when a new valid config was handed to ``on_change``."""
        try:
            stat = os.stat(self.path)
            if (stat.st_mtime_ns, stat.st_size) == self._stat:
                return False
            stat_key, digest = self._read()
        except OSError as exc:
            self._refuse("unreadable", [f"cannot read: {exc.strerror or exc}"], _GONE)
            return False
        self._stat = stat_key
        if digest == self._digest:
            return False  # touched, or back to content already judged
        self._digest = digest
        try:
            new = load_detectors_config(self.path, self.registry)
        except ConfigError as err:
            self._refuse("invalid", err.problems, digest)
            return False
        if new == self.current:  # comments or layout changed, not the meaning
            self.last_problems = []
            return False
        try:
            self.on_change(new)
        except Exception:  # noqa: BLE001 - a failing consumer keeps the old config, the watcher lives
            RELOADS.inc(outcome="failed")
            log.exception("detectors config %s is valid but applying it failed; keeping the running config",
                          self.path)
            return False
        self.current, self.last_problems = new, []
        RELOADS.inc(outcome="applied")
        log.info("detectors config %s reloaded", self.path)
        return True

    def _refuse(self, outcome: str, problems: list[str], digest: bytes) -> None:
        """Count and log (once per distinct content) a refused change; the running config stays."""
        if outcome == "unreadable":
            if self._digest == _GONE:
                return  # still unreadable: already said
            self._stat = None
        self._digest, self.last_problems = digest, list(problems)
        RELOADS.inc(outcome=outcome)
        log.error("detectors config %s refused, keeping the running config (%d problem%s):\n%s",
                  self.path, len(problems), "" if len(problems) == 1 else "s",
                  "\n".join(f"  {p}" for p in problems))

    def start(self) -> None:
        """Poll in a daemon thread every ``interval_s`` until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="finsa-detectors-config", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
