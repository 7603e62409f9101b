"""A bounded on-disk spool where encoded batches wait until the broker acknowledged them.

Layout: a directory of segment files ``NNNNNNNNNNNN.seg``, written in order. Each record is

    body_len u32 | crc32 u32 (of id + payload) | id 16s | payload

little-endian. The newest segment is open for appending; a segment is closed (flushed and
fsynced) when it reaches ``segment_bytes`` or on :meth:`Spool.close`. A segment file is deleted
once every record in it was acknowledged (:meth:`Spool.ack`), so a batch leaves the spool only
when the broker has it.

Promises:

* FIFO: :meth:`Spool.entries` gives entries in the order they were appended, across restarts.
* Survives a restart: :meth:`Spool.open` rescans the segments; a torn or corrupt tail (a crash in
  the middle of a write) is truncated away and counted (``finsa_spool_recovered_total``).
  Acknowledgements are not persisted: after a restart the unacknowledged *and* the acknowledged
  records of a partly acknowledged segment are sent again (at-least-once; the batch ids make the
  storage writes idempotent, so a resend is harmless).
* Bounded: when ``max_bytes`` or ``max_batches`` would be exceeded a new batch is *refused*
  (``append`` returns False and ``finsa_spool_dropped_total`` counts it) and the oldest are kept:
  what was metered first is sent first, and an outage shows up as one gap at its end.

Thread-safe: the meter threads append while the sender reads and acknowledges. One process at a
time: :meth:`Spool.open` takes an exclusive lock on ``directory/.lock`` (SpoolBusyError if held).

>>> import tempfile
>>> spool = Spool(tempfile.mkdtemp(), max_bytes=1 << 20, max_batches=10).open()
>>> spool.append(b"a" * 16, b"first"), spool.append(b"b" * 16, b"second")
(True, True)
>>> [spool.read(e) for e in spool.entries()]
[b'first', b'second']
>>> spool.ack(b"a" * 16), spool.depth_batches
(True, 1)
"""

from __future__ import annotations

import fcntl
import errno
import io
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from finsa.errors import FinsaError
from finsa.metrics import REGISTRY

__all__ = ["Spool", "SpoolEntry", "SpoolBusyError", "ID_BYTES"]

ID_BYTES = 16
_REC = struct.Struct("<II")
_SUFFIX = ".seg"

APPENDED = REGISTRY.counter("finsa_spool_appended_total", "Batches written to the agent's spool")
ACKED = REGISTRY.counter("finsa_spool_acknowledged_total", "Spooled batches released after the broker's ack")
DROPPED = REGISTRY.counter("finsa_spool_dropped_total", "Batches refused because the spool was full", ["limit"])
RECOVERED = REGISTRY.counter("finsa_spool_recovered_total", "Torn or corrupt spool tails truncated at open", ["what"])
DEPTH_BATCHES = REGISTRY.gauge("finsa_spool_depth_batches", "Batches waiting in the spool")
DEPTH_BYTES = REGISTRY.gauge("finsa_spool_depth_bytes", "Bytes waiting in the spool")


class SpoolBusyError(FinsaError):
    """Another process holds the spool directory."""


@dataclass(frozen=True)
class SpoolEntry:
    """Where one spooled batch lives. ``seq`` orders entries across segments."""

    seq: int
    batch_id: bytes
    segment: int
    offset: int
    size: int


@dataclass
class _Segment:
    number: int
    path: Path
    records: list[SpoolEntry]
    acked: set[bytes]
    size: int


class Spool:
    """A directory of segment files holding batches until they are acknowledged."""

    def __init__(self, directory: str | Path, max_bytes: int, max_batches: int,
                 segment_bytes: int = 4 * 1024 * 1024) -> None:
        if max_bytes <= 0 or max_batches <= 0 or segment_bytes <= 0:
            raise ValueError("spool limits must be positive")
        self.directory = Path(directory)
        self.max_bytes, self.max_batches, self.segment_bytes = max_bytes, max_batches, segment_bytes
        self._segments: list[_Segment] = []
        self._by_id: dict[bytes, tuple[_Segment, SpoolEntry]] = {}
        self._writer: io.FileIO | None = None
        self._dir_lock: int | None = None
        self._lock = threading.Lock()
        self._seq = 0
        self.depth_batches = 0
        self.depth_bytes = 0

    # --- lifecycle -----------------------------------------------------------------------

    def open(self) -> "Spool":
        """Create the directory or recover what a previous run left in it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._take_directory()
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            try:
                number = int(path.stem)
            except ValueError:
                continue
            segment = self._scan(number, path)
            if segment.records:
                self._segments.append(segment)
                for entry in segment.records:
                    self._by_id[entry.batch_id] = (segment, entry)
            else:
                path.unlink()
        self._update_gauges()
        return self

    def close(self) -> None:
        """Flush and fsync the open segment; the spool can be opened again later."""
        with self._lock:
            self._close_writer()
            if self._dir_lock is not None:
                os.close(self._dir_lock)  # releases the flock
                self._dir_lock = None

    def _take_directory(self) -> None:
        if self._dir_lock is not None:
            return
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise SpoolBusyError(f"{self.directory}: another agent uses this spool") from None
        self._dir_lock = fd

    def _scan(self, number: int, path: Path) -> _Segment:
        data = path.read_bytes()
        records, pos = [], 0
        while pos + _REC.size <= len(data):
            body_len, crc = _REC.unpack_from(data, pos)
            start, end = pos + _REC.size, pos + _REC.size + body_len
            if body_len < ID_BYTES or end > len(data) or zlib.crc32(data[start:end]) != crc:
                break
            batch_id = bytes(data[start:start + ID_BYTES])
            records.append(SpoolEntry(self._next_seq(), batch_id, number, start + ID_BYTES, body_len - ID_BYTES))
            self.depth_batches += 1
            self.depth_bytes += end - pos
            pos = end
        if pos != len(data):
            RECOVERED.inc(what="torn_tail")
            with open(path, "r+b") as fh:
                fh.truncate(pos)
                os.fsync(fh.fileno())
        return _Segment(number, path, records, set(), pos)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # --- writing ---------------------------------------------------------------------------

    def append(self, batch_id: bytes, payload: bytes) -> bool:
        """Write one batch; False (and a counted drop) when a limit would be exceeded."""
        if len(batch_id) != ID_BYTES:
            raise ValueError(f"batch ids are {ID_BYTES} bytes")
        record_bytes = _REC.size + ID_BYTES + len(payload)
        with self._lock:
            if batch_id in self._by_id:
                return True  # already waiting: a second copy would only be sent twice
            if self.depth_batches + 1 > self.max_batches:
                DROPPED.inc(limit="batches")
                return False
            if self.depth_bytes + record_bytes > self.max_bytes:
                DROPPED.inc(limit="bytes")
                return False
            segment, writer = self._writable_segment()
            body = batch_id + payload
            record = _REC.pack(len(body), zlib.crc32(body)) + body
            try:  # one unbuffered write: on a full disk nothing is left behind to land later
                if writer.write(record) != len(record):
                    raise OSError(errno.ENOSPC, "short write to the spool")
            except OSError:
                self._abandon_writer(segment, writer)
                DROPPED.inc(limit="disk")
                return False
            entry = SpoolEntry(self._next_seq(), batch_id, segment.number,
                               segment.size + _REC.size + ID_BYTES, len(payload))
            segment.records.append(entry)
            segment.size += record_bytes
            self._by_id[batch_id] = (segment, entry)
            self.depth_batches += 1
            self.depth_bytes += record_bytes
            if segment.size >= self.segment_bytes:
                self._close_writer()
        APPENDED.inc()
        self._update_gauges()
        return True

    def _writable_segment(self) -> tuple[_Segment, io.FileIO]:
        if self._writer is None:
            number = (self._segments[-1].number + 1) if self._segments else 1
            path = self.directory / f"{number:012d}{_SUFFIX}"
            self._writer = open(path, "ab", buffering=0)
            self._segments.append(_Segment(number, path, [], set(), 0))
        return self._segments[-1], self._writer

    def _abandon_writer(self, segment: _Segment, writer: io.FileIO) -> None:
        """After a failed write: cut the segment back to its last whole record and let it go."""
        try:
            os.ftruncate(writer.fileno(), segment.size)
        except OSError:
            pass  # the partial tail is then cut by the CRC check at the next open
        writer.close()
        self._writer = None
        if not segment.records:
            self._segments.remove(segment)
            segment.path.unlink(missing_ok=True)

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            os.fsync(self._writer.fileno())
            self._writer.close()
            self._writer = None
            _fsync_directory(self.directory)
            self._drop_if_done(self._segments[-1])

    # --- reading and acknowledging ---------------------------------------------------------

    def entries(self, after_seq: int = 0, limit: int | None = None) -> list[SpoolEntry]:
        """Unacknowledged entries with ``seq > after_seq``, oldest first."""
        out: list[SpoolEntry] = []
        with self._lock:
            for segment in self._segments:
                if segment.records and segment.records[-1].seq <= after_seq:
                    continue
                for entry in segment.records:
                    if entry.seq > after_seq and entry.batch_id not in segment.acked:
                        out.append(entry)
                        if limit is not None and len(out) >= limit:
                            return out
        return out

    def read(self, entry: SpoolEntry) -> bytes:
        """The payload of an entry (read from its segment file)."""
        with self._lock:
            if self._writer is not None and entry.segment == self._segments[-1].number:
                self._writer.flush()
            path = self.directory / f"{entry.segment:012d}{_SUFFIX}"
        with open(path, "rb") as fh:
            fh.seek(entry.offset)
            return fh.read(entry.size)

    def ack(self, batch_id: bytes) -> bool:
        """Release a batch the broker acknowledged; False when it is not (or no longer) spooled."""
        with self._lock:
            found = self._by_id.pop(batch_id, None)
            if found is None:
                return False
            segment, entry = found
            segment.acked.add(batch_id)
            self.depth_batches -= 1
            self.depth_bytes -= _REC.size + ID_BYTES + entry.size
            if not self._is_open(segment):
                self._drop_if_done(segment)
        ACKED.inc()
        self._update_gauges()
        return True

    def _drop_if_done(self, segment: _Segment) -> None:
        if len(segment.acked) == len(segment.records):
            self._segments.remove(segment)
            segment.path.unlink(missing_ok=True)

    def _is_open(self, segment: _Segment) -> bool:
        return self._writer is not None and segment is self._segments[-1]

    def _update_gauges(self) -> None:
        DEPTH_BATCHES.set(self.depth_batches)
        DEPTH_BYTES.set(self.depth_bytes)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
