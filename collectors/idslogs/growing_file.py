"""Follow a growing log file (Zeek, Suricata EVE) and hand out complete lines.

:class:`LogTail` polls one path: :meth:`LogTail.read_lines` returns the complete lines written
since the last call (a line still being written waits for its newline). It survives rotation (the
path now names a new inode: the old file is read to its end first, then the new one from its
start; ``follow_rotation=False`` stays on the file it opened, for
:class:`finsa.collectors.idslogs.rotating_files.LogFollower`) and truncation (the file shrank below the read
position, or its first bytes changed: the part not read yet is read from the copy
``copytruncate`` left next to it, found by fingerprint, then the file again from its start). It
starts at the beginning (``from_start=True``), at the current end of the file, or at a saved
:class:`~finsa.collectors.idslogs.read_positions.FilePosition` (``start``; :meth:`LogTail.position` gives the
one to save). With ``header_prefix`` a file entered past its start first hands out its leading
header lines again (Zeek TSV ``#fields``). Memory is bounded: at most ``max_line_bytes`` of an
unfinished line are held; a longer line is dropped whole and counted in
``finsa_collector_log_lines_skipped_total{source,reason="line_too_long"}``.

Counted: ``finsa_collector_log_lines_read_total`` / ``_bytes_read_total{source}``,
``finsa_collector_log_reopens_total{reason=rotated|truncated}``,
``finsa_collector_log_resumes_total{source,outcome}`` and ``finsa_collector_log_copies_read_total``.

Also here, shared by the log parsers: that skip counter, :func:`rows_to_batch` and
:class:`LineParser` (feed one line, never raise: a :class:`BadLine` or unreadable value is
counted under its reason; drain the FLOW and ALERT batches parsed so far).

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "conn.log")
>>> _ = open(path, "w").write("one\\ntw")
>>> tail = LogTail(path)
>>> tail.read_lines()
['one']
>>> _ = open(path, "a").write("o\\n")
>>> tail.read_lines()
['two']
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Sequence

import numpy as np

from finsa import wire
from finsa.collectors.idslogs.read_positions import FINGERPRINT_BYTES, FilePosition, find_copy, fingerprint, matches
from finsa.metrics import REGISTRY

__all__ = ["LogTail", "SKIPPED", "rows_to_batch", "BadLine", "LineParser"]

SKIPPED = REGISTRY.counter("finsa_collector_log_lines_skipped_total",
                           "Log lines (Zeek, Suricata EVE) skipped, by source and reason", ["source", "reason"])
ROTATIONS = REGISTRY.counter("finsa_collector_log_reopens_total",
                             "Followed log files reopened, by reason (rotated, truncated)", ["reason"])
LINES_READ = REGISTRY.counter("finsa_collector_log_lines_read_total",
                             "Complete lines read from followed log files, by source", ["source"])
BYTES_READ = REGISTRY.counter("finsa_collector_log_bytes_read_total",
                             "Bytes read from followed log files, by source", ["source"])
RESUMES = REGISTRY.counter("finsa_collector_log_resumes_total",
                           "Followed files opened at a saved position, by source and outcome (resumed; rotated "
                           "or truncated while the agent was away, with _copy_read when the rest was read from "
                           "the renamed or copied file)", ["source", "outcome"])
COPIES_READ = REGISTRY.counter("finsa_collector_log_copies_read_total",
                               "Renamed or copied-away files read from a saved position to their end", ["source"])
_DTYPES = {"u8": np.uint8, "u16": np.uint16, "u32": np.uint32, "u64": np.uint64, "i64": np.int64,
           "f64": np.float64}


def rows_to_batch(rtype: wire.RecordType, rows: Sequence[Mapping[str, Any]]) -> wire.RecordBatch | None:
    """One batch from row dicts (missing keys take the field's default); None when no rows."""
    if not rows:
        return None
    names = set().union(*(r.keys() for r in rows))
    defaults = {f.name: ("" if f.kind in ("str", "ip") else 0) for f in rtype.fields}
    columns: dict[str, Any] = {}
    for name in names:
        values = [r.get(name, defaults[name]) for r in rows]
        kind = rtype.field(name).kind
        columns[name] = values if kind in ("str", "ip") else np.array(values, dtype=_DTYPES[kind])
    return rtype.make_batch(columns)


class BadLine(ValueError):
    """A log line that cannot be mapped; the message is the skip reason."""


def _check_encodable(rows: Sequence[Mapping[str, Any]]) -> None:
    """UnicodeEncodeError when a string of ``rows`` cannot be written as UTF-8."""
    for row in rows:
        for value in row.values():
            if isinstance(value, str):
                value.encode("utf-8")


class LineParser:
    """Base of the log parsers: subclasses set ``source`` and implement ``_feed(line)``, which
    appends row dicts to ``flows`` / ``alerts`` or raises (:class:`BadLine` names the reason)."""

    source = ""

    def __init__(self, institution_id: str, sensor_id: str) -> None:
        self.institution_id, self.sensor_id = institution_id, sensor_id
        self.flows: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []
        self.lines = self.skipped = 0

    def feed(self, line: str) -> None:
        """Parse one line (without its newline); never raises, malformed lines are counted.

        A line whose rows could not be encoded (a JSON ``\\ud800`` escape gives a lone surrogate,
        which UTF-8 cannot hold) is dropped whole and counted as ``bad_encoding``.
        """
        self.lines += 1
        marks = len(self.flows), len(self.alerts)
        try:
            self._feed(line)
            if "\\u" in line:  # only an escape can make a string that UTF-8 cannot encode
                _check_encodable(self.flows[marks[0]:] + self.alerts[marks[1]:])
        except UnicodeEncodeError:
            del self.flows[marks[0]:], self.alerts[marks[1]:]
            self._skip("bad_encoding")
        except BadLine as exc:
            self._skip(str(exc))
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, wire.WireFormatError):
            self._skip("bad_value")

    def _skip(self, reason: str) -> None:
        self.skipped += 1
        SKIPPED.inc(source=self.source, reason=reason)

    def _feed(self, line: str) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def drain(self) -> tuple[wire.RecordBatch | None, wire.RecordBatch | None]:
        """(FLOW batch, ALERT batch) of the rows parsed since the last drain; None where empty."""
        flows, alerts = self.flows, self.alerts
        self.flows, self.alerts = [], []
        return rows_to_batch(wire.FLOW, flows), rows_to_batch(wire.ALERT, alerts)


class LogTail:
    """Poll-follow one file; see the module docstring. Not thread-safe; one reader per path."""

    def __init__(self, path: str | Path, from_start: bool = True, max_line_bytes: int = 1 << 20,
                 chunk_bytes: int = 1 << 20, source: str = "log", start: FilePosition | None = None,
                 follow_rotation: bool = True, header_prefix: str | None = None) -> None:
        self.path, self.from_start, self.start = Path(path), from_start, start
        self.header_prefix = header_prefix.encode() if header_prefix else None
        self.max_line_bytes, self.chunk_bytes, self.source = max_line_bytes, chunk_bytes, source
        self.follow_rotation = follow_rotation
        self._file: BinaryIO | None = None
        self._inode: tuple[int, int] | None = None
        self._fp: tuple[str, int] = ("", 0)
        self._partial = b""
        self._discarding = False
        self._first_open = True
        self._pending: list[str] = []

    @property
    def identity(self) -> tuple[int, int] | None:
        """(device, inode) of the file being read; None before it was opened."""
        return self._inode if self._file is not None else None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def open(self) -> bool:
        """Open the file now (else the first :meth:`read_lines` does); False when it is missing."""
        return self._file is not None or self._open()

    def _open(self) -> bool:
        try:
            handle = open(self.path, "rb")  # kept open while following
        except OSError:
            return False
        st = os.fstat(handle.fileno())
        self._file, self._inode = handle, (st.st_dev, st.st_ino)
        self._partial, self._discarding, self._fp = b"", False, ("", 0)
        if self._first_open and self.start is not None:
            self._resume(st.st_size)
        elif self._first_open and not self.from_start:
            handle.seek(st.st_size)
            self._pending += self._header(handle.fileno(), st.st_size)
        self._first_open = False
        return True

    def _resume(self, size: int) -> None:
        """Seek to the saved position when this is still its file; else read what is left of the
        old content from its renamed or copied file first and start this one from the beginning."""
        start = self.start
        if self._inode == start.identity and matches(self._file.fileno(), size, start):
            self._file.seek(start.offset)
            self._pending += self._header(self._file.fileno(), start.offset)
            RESUMES.inc(source=self.source, outcome="resumed")
            return
        outcome = "truncated" if self._inode == start.identity else "rotated"
        if self._read_copy(start, exclude=self._inode if outcome == "truncated" else None):
            outcome += "_copy_read"
        RESUMES.inc(source=self.source, outcome=outcome)

    def _read_copy(self, pos: FilePosition, exclude: tuple[int, int] | None) -> bool:
        """Queue the complete lines after ``pos.offset`` of the file holding ``pos``'s content."""
        copy = find_copy(pos, exclude=exclude)
        if copy is None:
            return False
        saved = self._partial, self._discarding
        self._partial, self._discarding = b"", False
        with open(copy, "rb") as handle:
            self._pending += self._header(handle.fileno(), pos.offset)
            handle.seek(pos.offset)
            while chunk := handle.read(self.chunk_bytes):
                self._pending.extend(self._split(chunk))
        self._partial, self._discarding = saved
        COPIES_READ.inc(source=self.source)
        return True

    def _header(self, fd: int, offset: int) -> list[str]:
        """The file's leading ``header_prefix`` lines when reading starts past them at ``offset``
        (a Zeek TSV log's ``#separator``/``#fields`` lines, which its parser needs)."""
        if self.header_prefix is None or offset <= 0:
            return []
        out = []
        for piece in os.pread(fd, min(offset, 1 << 16), 0).split(b"\n")[:-1]:
            if not piece.startswith(self.header_prefix):
                break
            out.append(piece.rstrip(b"\r").decode("utf-8", "replace"))
        return out

    def position(self) -> FilePosition | None:
        """Where reading stands: just after the last complete line handed out; None without a file."""
        if self._file is None:
            return None
        fd = self._file.fileno()
        if self._fp[1] < FINGERPRINT_BYTES:
            self._fp = fingerprint(fd, os.fstat(fd).st_size)
        offset = self._file.tell() - len(self._partial)
        return FilePosition(str(self.path), self._inode[0], self._inode[1], offset, *self._fp)

    @property
    def renamed(self) -> bool:
        """True when the path no longer names the file being read (rotated away or deleted)."""
        return self._file is not None and self._path_inode() != self._inode

    def _path_inode(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def read_lines(self, max_lines: int = 100_000) -> list[str]:
        """Complete lines written since the last call (without their newline), at most about
        ``max_lines``; handles rotation and truncation."""
        if self._file is None and not self._open():
            self._first_open = False  # a file that appears later is read from its start
            return []
        lines = self._restart_if_truncated()
        lines, self._pending = self._pending + lines, []
        lines += self._drain(max_lines - len(lines))
        if len(lines) < max_lines:
            lines += self._reopen_if_rotated(max_lines - len(lines))
        LINES_READ.inc(len(lines), source=self.source)
        return lines

    def _reopen_if_rotated(self, max_lines: int) -> list[str]:
        current = self._path_inode()
        if not self.follow_rotation or current is None or current == self._inode:
            return self._restart_if_truncated() + self._drain(max_lines)
        ROTATIONS.inc(reason="rotated")  # the old file was read to its end above
        self.close()
        return self._drain(max_lines) if self._open() else []

    def _restart_if_truncated(self) -> list[str]:
        """When the file was truncated: the lines not read yet from its copy (copytruncate), and
        reading starts again at the beginning."""
        if not self._truncated():
            return []
        ROTATIONS.inc(reason="truncated")
        offset = self._file.tell() - len(self._partial)
        before = FilePosition(str(self.path), *self._inode, offset, *self._fp)  # type: ignore[misc, call-arg]  # *inode, *fp spell the fields in order
        self._file.seek(0)
        self._partial, self._discarding, self._fp = b"", False, ("", 0)
        if before.fingerprint_bytes:
            self._read_copy(before, exclude=self._inode)
        lines, self._pending = self._pending, []
        return lines

    def _truncated(self) -> bool:
        """The file shrank below the read position, or its first bytes changed (copytruncate
        followed by new writes past the old position before this poll)."""
        fd = self._file.fileno()
        size = os.fstat(fd).st_size
        offset = self._file.tell() - len(self._partial)
        if size < self._file.tell():
            return True
        if self._fp[1] and offset and not matches(fd, size, FilePosition("", 0, 0, 0, *self._fp)):
            return True
        if self._fp[1] < FINGERPRINT_BYTES and size > self._fp[1]:
            self._fp = fingerprint(fd, size)  # remembered to notice a rewrite at the next poll
        return False

    def _drain(self, max_lines: int) -> list[str]:
        out: list[str] = []
        while len(out) < max_lines:
            chunk = self._file.read(self.chunk_bytes)
            if not chunk:
                break
            BYTES_READ.inc(len(chunk), source=self.source)
            out.extend(self._split(chunk))
        return out

    def _split(self, chunk: bytes) -> list[str]:
        data = self._partial + chunk
        pieces = data.split(b"\n")
        self._partial = pieces.pop()
        out = []
        for piece in pieces:
            if self._discarding:  # the rest of an over-long line
                self._discarding = False
                continue
            if len(piece) > self.max_line_bytes:
                SKIPPED.inc(source=self.source, reason="line_too_long")
                continue
            out.append(piece.rstrip(b"\r").decode("utf-8", "replace"))
        if len(self._partial) > self.max_line_bytes:
            if not self._discarding:
                SKIPPED.inc(source=self.source, reason="line_too_long")
            self._partial, self._discarding = b"", True
        return out
