"""The one file watcher: a settings file changed on disk is validated before it replaces the running one.

:class:`FileWatcher` polls a file's modification time and size, and on a change its content hash
(no extra dependency, works on any file system). New content goes through ``load(path)``, which
validates it (raising :class:`~finsa.errors.ConfigError`); a valid value that differs from the
running one is handed to ``on_change``; an invalid one is reported **once** through
``on_error(problems)`` and the running value stays. Each attempt has an outcome, passed to
``on_outcome`` (for a ``..._reloads_total{outcome}`` counter): ``applied``, ``invalid``,
``unreadable`` (the file vanished or cannot be read) or ``failed`` (``on_change`` raised).

Use :meth:`FileWatcher.load_now` once at start-up (an invalid file there is an error), or
:meth:`FileWatcher.mark` to take the file's current stamp as seen; then either call
:meth:`FileWatcher.poll` from your own loop or :meth:`FileWatcher.start` a daemon thread polling
every ``interval_s`` until :meth:`FileWatcher.stop`. :func:`file_stamp` is the cheap change test
alone (used by watchers of many files, e.g. intel feeds).

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
>>> _ = path.write_text("1")
>>> seen = []
>>> w = FileWatcher(path, lambda p: int(p.read_text()), seen.append)
>>> w.load_now()
1
>>> _ = path.write_text("22"); w.poll(), seen
(True, [22])
>>> w.poll()
False
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

from finsa.errors import ConfigError

__all__ = ["FileWatcher", "file_stamp"]

T = TypeVar("T")
log = logging.getLogger("finsa.watch")
_GONE = b"unreadable"  # the digest recorded while the file cannot be read


def file_stamp(path: str | Path) -> tuple[int, int] | None:
    """(modification time in ns, size in bytes) of a file, or None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _digest(path: Path) -> bytes:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).digest()


class FileWatcher(Generic[T]):
    """Watches one file; see the module docstring."""

    def __init__(self, path: str | Path, load: Callable[[Path], T], on_change: Callable[[T], Any],
                 on_error: Callable[[list[str]], Any] | None = None, interval_s: float = 2.0,
                 on_outcome: Callable[[str], Any] | None = None, name: str = "") -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.path, self.parse, self.on_change = Path(path), load, on_change
        self.on_error = on_error or (lambda problems: None)
        self.on_outcome = on_outcome or (lambda outcome: None)
        self.interval_s, self.name = float(interval_s), name or self.path.name
        self.current: T | None = None
        self.last_problems: list[str] = []
        self._stat: tuple[int, int] | None = None
        self._digest: bytes | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def mark(self) -> None:
        """Take the file as it is now as already seen (a later edit is a change)."""
        try:
            self._stat, self._digest = file_stamp(self.path), _digest(self.path)
        except OSError:
            self._stat, self._digest = None, _GONE

    def changed(self) -> bool:
        """True when the file's stamp moved since it was last seen (cheap: no read)."""
        return file_stamp(self.path) != self._stat

    def load_now(self) -> T:
        """Read and validate the file now (ConfigError when invalid or unreadable); it becomes the
        running value."""
        try:
            stat, digest = file_stamp(self.path), _digest(self.path)
        except OSError as exc:
            raise ConfigError(str(self.path), [f"cannot read: {exc.strerror or exc}"]) from None
        self.current = self.parse(self.path)
        self._stat, self._digest, self.last_problems = stat, digest, []
        return self.current

    def poll(self) -> bool:
        """Look once; True when a new valid value was handed to ``on_change``."""
        stat = file_stamp(self.path)
        if stat is not None and stat == self._stat:
            return False
        try:
            if stat is None:
                raise FileNotFoundError(2, "No such file or directory")
            digest = _digest(self.path)
        except OSError as exc:
            self._refuse("unreadable", [f"cannot read: {exc.strerror or exc}"], _GONE)
            return False
        self._stat = stat
        if digest == self._digest:
            return False  # touched, or back to content already judged
        self._digest = digest
        try:
            new = self.parse(self.path)
        except ConfigError as err:
            self._refuse("invalid", err.problems, digest)
            return False
        if self.current is not None and new == self.current:  # comments or layout changed, not the meaning
            self.last_problems = []
            return False
        try:
            self.on_change(new)
        except Exception:
            self.on_outcome("failed")
            log.exception("%s is valid but applying it failed; keeping the running settings", self.path)
            return False
        self.current, self.last_problems = new, []
        self.on_outcome("applied")
        log.info("%s reloaded", self.path)
        return True

    def _refuse(self, outcome: str, problems: list[str], digest: bytes) -> None:
        """Count and report (once per distinct content) a refused change; the running value stays."""
        if outcome == "unreadable":
            if self._digest == _GONE:
                return  # still unreadable: already said
            self._stat = None
        self._digest, self.last_problems = digest, list(problems)
        self.on_outcome(outcome)
        self.on_error(list(problems))
        log.error("%s refused, keeping the running settings (%d problem%s):\n%s", self.path, len(problems),
                  "" if len(problems) == 1 else "s", "\n".join(f"  {p}" for p in problems))

    def start(self) -> "FileWatcher[T]":
        """Poll in a daemon thread every ``interval_s`` until :meth:`stop`."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=f"watch-{self.name}", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.interval_s + 5)
