"""Follow a growing log file (Zeek, Suricata EVE) and hand out complete lines.

:class:`LogTail` polls one path: :meth:`LogTail.read_lines` returns the complete lines written
since the last call (a line still being written waits for its newline). It survives rotation (the
path now names a new inode: the old file is read to its end first, then the new one from its
start) and truncation (the file shrank below the read position: read again from the start). It
starts at the beginning (``from_start=True``) or at the current end of the file. Memory is bounded:
at most ``max_line_bytes`` of an unfinished line are held; a longer line is dropped whole and
counted in ``finsa_collector_log_lines_skipped_total{source,reason="line_too_long"}``.

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
from typing import Any, Mapping, Sequence

import numpy as np

from finsa import wire
from finsa.metrics import REGISTRY

__all__ = ["LogTail", "SKIPPED", "rows_to_batch", "BadLine", "LineParser"]

SKIPPED = REGISTRY.counter("finsa_collector_log_lines_skipped_total",
                           "Log lines (Zeek, Suricata EVE) skipped, by source and reason", ["source", "reason"])
ROTATIONS = REGISTRY.counter("finsa_collector_log_reopens_total",
                             "Followed log files reopened, by reason (rotated, truncated)", ["reason"])
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
        """Parse one line (without its newline); never raises, malformed lines are counted."""
        self.lines += 1
        try:
            self._feed(line)
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
                 chunk_bytes: int = 1 << 20, source: str = "log") -> None:
        self.path, self.from_start = Path(path), from_start
        self.max_line_bytes, self.chunk_bytes, self.source = max_line_bytes, chunk_bytes, source
        self._file = None
        self._inode: tuple[int, int] | None = None
        self._partial = b""
        self._discarding = False
        self._first_open = True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> bool:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - kept open while following
        except OSError:
            return False
        st = os.fstat(handle.fileno())
        if self._first_open and not self.from_start:
            handle.seek(st.st_size)
        self._first_open = False
        self._file, self._inode = handle, (st.st_dev, st.st_ino)
        self._partial, self._discarding = b"", False
        return True

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
        lines = self._drain(max_lines)
        if len(lines) >= max_lines:
            return lines
        current = self._path_inode()
        if current is not None and current != self._inode:  # rotated: old file read to its end above
            ROTATIONS.inc(reason="rotated")
            self.close()
            if self._open():
                lines += self._drain(max_lines - len(lines))
        elif current is not None and os.fstat(self._file.fileno()).st_size < self._file.tell():
            ROTATIONS.inc(reason="truncated")
            self._file.seek(0)
            self._partial, self._discarding = b"", False
            lines += self._drain(max_lines - len(lines))
        return lines

    def _drain(self, max_lines: int) -> list[str]:
        out: list[str] = []
        while len(out) < max_lines:
            chunk = self._file.read(self.chunk_bytes)
            if not chunk:
                break
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
