"""Hot reload of the detectors file: a changed file is validated before it replaces the running one.

:class:`ConfigWatcher` is the core :class:`~finsa.watch.FileWatcher` bound to the detectors file:
new content is validated (against the institutions ``registry`` when given); a valid config is
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

from pathlib import Path
from typing import Callable

from finsa.detectors.config import Config, load_detectors_config
from finsa.institutions import Registry
from finsa.metrics import REGISTRY
from finsa.watch import FileWatcher

__all__ = ["ConfigWatcher"]

RELOADS = REGISTRY.counter("finsa_detector_config_reloads_total",
                           "Detector config file changes seen, by outcome", ["outcome"])


class ConfigWatcher(FileWatcher[Config]):
    """Watches one detectors file; see the module docstring."""

    def __init__(self, path: str | Path, on_change: Callable[[Config], None], interval_s: float = 2.0,
                 registry: Registry | None = None) -> None:
        self.registry = registry
        super().__init__(path, lambda p: load_detectors_config(p, self.registry), on_change,
                         interval_s=interval_s, on_outcome=lambda outcome: RELOADS.inc(outcome=outcome),
                         name="finsa-detectors-config")

    def load(self) -> Config:
        """Read and validate the file now (ConfigError when invalid); it becomes the running config."""
        return self.load_now()
