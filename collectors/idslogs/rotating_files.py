"""Follow a set of log files across rotations and agent restarts, each line handed out once.

:class:`LogFollower` follows every file a listing function returns (the agent's Zeek directories
and Suricata ``eve.json`` files), one :class:`~finsa.collectors.idslogs.growing_file.LogTail` per *file* (device
and inode), the way Filebeat's harvesters and Fluent Bit's tail input do:

* **rename rotation** (``conn.log`` -> ``conn.<date>.log``, ``eve.json`` -> ``eve.json.1``): the
  renamed file is read to its end through the open handle and closed once it stayed quiet for
  ``rotate_wait_s``; the new file at the path is a new file, read from its start;
* **copytruncate**: the tail notices the file shrank or its first bytes changed, reads what it had
  not read yet from the copy (found by fingerprint next to the file), then the file from its start;
* **restarts**: :meth:`commit` saves every file's position (identity, offset after the last
  complete line, fingerprint) in a :class:`~finsa.collectors.idslogs.read_positions.PositionStore`; :meth:`open`
  resumes each file from it. A file rotated or truncated while the agent was away is finished
  from its renamed or copied file when one is still next to it (else counted as ``gone``).
  Call :meth:`commit` *after* the lines were handed on (spooled): a crash in between repeats those
  lines, it never loses them (at-least-once).
* a file not seen before is read from its start, except at the very first run (no positions file
  yet), where ``from_start`` decides (False: from its end, like ``tail -F``);
* a file quiet for ``inactive_s`` is closed (its position kept) and reopened by :meth:`scan` when
  it grows, so old rotated files in a followed directory do not hold handles forever.

Zeek TSV logs resumed in the middle get their ``#`` header lines again (``header_prefix``).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from finsa.collectors.idslogs.read_positions import FilePosition, PositionStore, find_copy
from finsa.collectors.idslogs.growing_file import RESUMES, ROTATIONS, LogTail
from finsa.metrics import REGISTRY

__all__ = ["LogFollower", "SAVES"]

SAVES = REGISTRY.counter("finsa_collector_log_position_saves_total",
                         "Saves of followed logs' read positions, by source and outcome (saved, failed)",
                         ["source", "outcome"])
log = logging.getLogger("finsa.agent")

Identity = tuple[int, int]


@dataclass(eq=False)
class _Follow:
    tail: LogTail
    last_active: float


class LogFollower:
    """Follow the files ``list_files()`` returns; see the module docstring. Inert until :meth:`open`."""

    def __init__(self, list_files: Callable[[], list[Path]], source: str, store: PositionStore | None = None,
                 from_start: bool = False, rotate_wait_s: float = 5.0, inactive_s: float = 300.0,
                 header_prefix: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.list_files, self.source, self.store, self.from_start = list_files, source, store, from_start
        self.rotate_wait_s, self.inactive_s, self.header_prefix, self.clock = rotate_wait_s, inactive_s, header_prefix, clock
        self.follows: list[_Follow] = []
        self._closed: dict[Identity, FilePosition] = {}
        self._first_run = True
        self._saved: list[FilePosition] | None = None

    def open(self) -> "LogFollower":
        """Load the saved positions (LogStateError when the file is refused) and start following."""
        if self.store is not None:
            loaded = self.store.load()
            self._first_run = not self.store.existed
            self._saved = sorted(loaded.values(), key=lambda p: (p.path, p.identity))
            self._closed = dict(loaded)
        found = self._scan(first=True)
        self._resume_missing(found)
        return self

    def _new_tail(self, path: Path, start: FilePosition | None, from_start: bool = True) -> LogTail:
        tail = LogTail(path, from_start=from_start, source=self.source, start=start, follow_rotation=False,
                       header_prefix=self.header_prefix)
        if tail.open():
            self.follows.append(_Follow(tail, self.clock()))
        return tail

    def _listing(self) -> dict[Identity, tuple[Path, int]]:
        out: dict[Identity, tuple[Path, int]] = {}
        for path in self.list_files():
            try:
                st = os.stat(path)
            except OSError:
                continue
            out.setdefault((st.st_dev, st.st_ino), (path, st.st_size))
        return out

    def scan(self) -> None:
        """Start following files that appeared, grew after being closed, or replaced a followed one."""
        self._scan(first=False)

    def _scan(self, first: bool) -> dict[Identity, tuple[Path, int]]:
        listing = self._listing()
        open_ids = {f.tail.identity for f in self.follows}
        unmatched = {p.path: p for ident, p in self._closed.items() if ident not in listing} if first else {}
        for ident, (path, size) in listing.items():
            if ident in open_ids:
                continue
            saved = self._closed.get(ident)
            if saved is not None:
                if size == saved.offset:
                    self._closed[ident] = FilePosition(str(path), *ident, *_tail_of(saved))  # type: ignore[arg-type]  # *ident, *tail spell the fields in order
                    continue  # nothing new; keep its position
                del self._closed[ident]
                self._new_tail(path, FilePosition(str(path), *ident, *_tail_of(saved)))  # type: ignore[arg-type]  # *ident, *tail spell the fields in order
            elif first and str(path) in unmatched:  # the file that replaced a followed one while away
                self._new_tail(path, self._closed.pop(unmatched.pop(str(path)).identity))
            else:
                self._new_tail(path, None, from_start=self.from_start or not (first and self._first_run))
        if not first:  # forget closed files that are gone from where they were seen
            self._closed = {i: p for i, p in self._closed.items() if i in listing or _still_there(p)}
        return listing

    def _resume_missing(self, listing: dict) -> None:
        """Saved files neither listed nor replaced: finish them where they were renamed to."""
        for ident, pos in list(self._closed.items()):
            if ident in listing:
                continue
            copy = find_copy(pos)
            if copy is None:
                RESUMES.inc(source=self.source, outcome="gone")
                del self._closed[ident]
            else:  # renamed (same identity) or a copy (its own identity, same first bytes)
                del self._closed[ident]
                st = os.stat(copy)
                if st.st_size > pos.offset:
                    self._new_tail(copy, FilePosition(str(copy), st.st_dev, st.st_ino, *_tail_of(pos)))

    def read(self, max_lines: int = 10_000) -> list[tuple[LogTail, list[str]]]:
        """(tail, new complete lines) of every followed file that had some; closes the files that
        were rotated away (after ``rotate_wait_s``) or stayed quiet (``inactive_s``)."""
        out = []
        now = self.clock()
        for follow in list(self.follows):
            lines = follow.tail.read_lines(max_lines)
            if lines:
                follow.last_active = now
                out.append((follow.tail, lines))
                continue
            quiet = now - follow.last_active
            if follow.tail.identity is None or quiet >= self.inactive_s or (
                    follow.tail.renamed and quiet >= self.rotate_wait_s):
                self._close(follow)
        return out

    def _close(self, follow: _Follow) -> None:
        if follow.tail.renamed:
            ROTATIONS.inc(reason="rotated")
        pos = follow.tail.position()
        follow.tail.close()
        self.follows.remove(follow)
        if pos is not None:
            self._closed[pos.identity] = pos

    def positions(self) -> list[FilePosition]:
        """Where every known file stands (followed and closed)."""
        live = [p for p in (f.tail.position() for f in self.follows) if p is not None]
        known = {p.identity: p for p in live}
        return sorted(list({**self._closed, **known}.values()), key=lambda p: (p.path, p.identity))

    def commit(self) -> bool:
        """Save the positions when they changed since the last save; True when written. A failed
        save (disk full, read-only) is counted, logged the first time, and tried again next time:
        reading goes on (a restart before a save succeeds repeats lines, it does not skip them)."""
        if self.store is None:
            return False
        positions = self.positions()
        if positions == self._saved:
            return False
        try:
            self.store.save(positions)
        except OSError as exc:
            if not SAVES.value(source=self.source, outcome="failed"):
                log.error("%s: cannot save the log positions to %s: %s", self.source, self.store.path, exc)
            SAVES.inc(source=self.source, outcome="failed")
            return False
        SAVES.inc(source=self.source, outcome="saved")
        self._saved = positions
        return True

    def close(self, commit: bool = True) -> None:
        """Save the positions (unless ``commit`` is False: lines read may not have been handed
        on, e.g. after a failure) and close every file."""
        try:
            if commit:
                self.commit()
        finally:
            for follow in self.follows:
                follow.tail.close()
            self.follows = []


def _tail_of(pos: FilePosition) -> tuple[int, str, int]:
    return pos.offset, pos.fingerprint, pos.fingerprint_bytes


def _still_there(pos: FilePosition) -> bool:
    try:
        st = os.stat(pos.path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == pos.identity
