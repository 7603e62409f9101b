"""Read positions of followed log files, kept across agent restarts.

A :class:`FilePosition` names one file by its identity (device, inode) *and* a fingerprint of its
first bytes (``blake2b`` of up to :data:`FINGERPRINT_BYTES`), as Filebeat and Fluent Bit do: the
identity follows a file through a rename, the fingerprint notices an inode that was reused or a
file truncated and rewritten in place (logrotate ``copytruncate``). ``offset`` is the byte just
after the last complete line handed out.

:class:`PositionStore` keeps the positions of one log source in one JSON file, written like the
spool writes its segments: to a temporary file, flushed and fsynced, renamed over the old one, and
the directory fsynced, so a crash leaves either the old or the new file, never a torn one. A file
that cannot be read back (bad JSON, wrong version, a missing or ill-typed field) is *refused*:
:meth:`PositionStore.load` raises :class:`LogStateError` naming the file and the problem, and the
file is left as it is. Nothing is read until an operator moves it away; then the logs are read as
on a first run (``logs_from_start``).

:func:`find_copy` looks, in a file's directory, for the file a position belongs to after it was
renamed (same identity and fingerprint) or copied away by ``copytruncate`` (same fingerprint, at
least ``offset`` bytes), so the lines written before the rotation are not lost.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "eve.json").write_text("one\\n")
>>> pos = position_of(folder / "eve.json", 4)
>>> store = PositionStore(folder / "log-positions-suricata.json")
>>> store.save([pos]); store.load() == {pos.identity: pos}
True
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from finsa.errors import FinsaError

__all__ = ["FilePosition", "PositionStore", "LogStateError", "FINGERPRINT_BYTES", "fingerprint", "matches",
           "position_of", "find_copy"]

FINGERPRINT_BYTES = 1024
_VERSION = 1
Identity = tuple[int, int]


class LogStateError(FinsaError):
    """A positions file that cannot be read back (refused, left untouched)."""


@dataclass(frozen=True)
class FilePosition:
    """Where reading of one file stands."""

    path: str
    dev: int
    inode: int
    offset: int
    fingerprint: str
    fingerprint_bytes: int

    @property
    def identity(self) -> Identity:
        return (self.dev, self.inode)


def fingerprint(fd: int, size: int) -> tuple[str, int]:
    """(hex digest, bytes hashed) of the first ``min(size, FINGERPRINT_BYTES)`` bytes of an open file."""
    length = max(0, min(size, FINGERPRINT_BYTES))
    head = os.pread(fd, length, 0) if length else b""
    return hashlib.blake2b(head, digest_size=16).hexdigest(), len(head)


def matches(fd: int, size: int, pos: FilePosition) -> bool:
    """True when the open file starts with the bytes ``pos`` was fingerprinted over."""
    if size < pos.fingerprint_bytes or size < pos.offset:
        return False
    head = os.pread(fd, pos.fingerprint_bytes, 0) if pos.fingerprint_bytes else b""
    return hashlib.blake2b(head, digest_size=16).hexdigest() == pos.fingerprint


def position_of(path: str | Path, offset: int) -> FilePosition:
    """The position ``offset`` of the file now at ``path`` (its identity and fingerprint)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        digest, length = fingerprint(fd, st.st_size)
    finally:
        os.close(fd)
    return FilePosition(str(path), st.st_dev, st.st_ino, offset, digest, length)


def find_copy(pos: FilePosition, exclude: Identity | None = None) -> Path | None:
    """The file in ``pos.path``'s directory that holds ``pos``'s content (renamed: same identity;
    copied by copytruncate: another identity), at least ``pos.offset`` bytes long; None if gone."""
    if not pos.fingerprint_bytes:
        return None  # an empty file's position matches any file
    directory = Path(pos.path).parent
    try:
        children = sorted(directory.iterdir())
    except OSError:
        return None
    found = None
    for child in children:
        try:
            st = child.stat()
        except OSError:
            continue
        ident = (st.st_dev, st.st_ino)
        if ident == exclude or not child.is_file() or st.st_size < max(pos.offset, pos.fingerprint_bytes):
            continue
        if found is not None and ident != pos.identity:
            continue  # a same-identity match wins over a copy
        try:
            fd = os.open(child, os.O_RDONLY)
        except OSError:
            continue
        try:
            if matches(fd, st.st_size, pos):
                found = child
                if ident == pos.identity:
                    break
        finally:
            os.close(fd)
    return found


_FIELDS = {"path": str, "dev": int, "inode": int, "offset": int, "fingerprint": str, "fingerprint_bytes": int}


def _entry(raw: object, where: str) -> FilePosition:
    if not isinstance(raw, dict) or set(raw) != set(_FIELDS):
        raise LogStateError(f"{where}: expected the fields {sorted(_FIELDS)}")
    for name, kind in _FIELDS.items():
        value = raw[name]
        if not isinstance(value, kind) or isinstance(value, bool) or (isinstance(value, int) and value < 0):
            raise LogStateError(f"{where}.{name}: not a {'non-negative integer' if kind is int else 'string'}")
    if raw["fingerprint_bytes"] > FINGERPRINT_BYTES:
        raise LogStateError(f"{where}.fingerprint_bytes: above {FINGERPRINT_BYTES}")
    return FilePosition(**raw)


class PositionStore:
    """The positions file of one log source (see the module docstring). Inert until used."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.existed = False

    def load(self) -> dict[Identity, FilePosition]:
        """Saved positions by identity; empty when there is no file yet; LogStateError when refused."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise LogStateError(f"{self.path}: cannot read the log positions file: {exc}") from None
        self.existed = True
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self._refused(f"not JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("version") != _VERSION or not isinstance(data.get("files"), list):
            raise self._refused(f"expected {{\"version\": {_VERSION}, \"files\": [...]}}")
        try:
            entries = [_entry(raw, f"files[{i}]") for i, raw in enumerate(data["files"])]
        except LogStateError as exc:
            raise self._refused(str(exc)) from None
        return {e.identity: e for e in entries}

    def _refused(self, problem: str) -> LogStateError:
        return LogStateError(f"{self.path}: log positions file refused: {problem}. It is left as it is; move "
                             "it away to read the logs as on a first run (logs_from_start decides where)")

    def save(self, positions: Iterable[FilePosition]) -> None:
        """Write the positions atomically (temporary file, fsync, rename, directory fsync)."""
        files = sorted((asdict(p) for p in positions), key=lambda d: (d["path"], d["dev"], d["inode"]))
        body = json.dumps({"version": _VERSION, "files": files}, indent=1).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.existed = True
