"""Read pcap and pcapng captures in chunks of packets that share one bytes buffer.

``read_capture(source)`` yields :class:`PacketBatch` objects: per-packet numpy arrays
(``ts_ns``, ``caplen``, ``wirelen``, ``linktype``, ``offset``) that index into one ``data``
buffer, so decoding is a handful of vectorised gathers instead of per-packet objects.

Both pcap byte orders and resolutions (micro/nanosecond) and pcapng (SHB, IDB with per-interface
link type and ``if_tsresol``, EPB, SPB, the obsolete PB) are understood. A source is a path, a
binary file object or ``"-"`` (standard input). A file that is not a capture raises
:class:`finsa.errors.CaptureError`; a truncated last record is counted and reading stops cleanly.
Such reader-level problems travel in ``PacketBatch.skipped``; :func:`finsa.collectors.meter.decode.decode_packets`
counts them, with the packets it skips, in ``finsa_collector_packets_skipped_total``.

>>> import io, struct
>>> hdr = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
>>> rec = struct.pack("<IIII", 10, 5, 4, 60) + b"abcd"
>>> [b] = read_capture(io.BytesIO(hdr + rec + rec))
>>> len(b), int(b.ts_ns[0]), int(b.wirelen[1]), b.packet(1)
(2, 10000005000, 60, b'abcd')
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Generator, Iterator

import numpy as np

from finsa.collectors.pcap.frames import frame_records, resync
from finsa.errors import CaptureError

__all__ = ["PacketBatch", "read_capture"]

_READ_BYTES = 4 << 20
_WINDOW_BYTES = 64 << 20
#: madvise(MADV_POPULATE_READ) (Linux 5.14+; not in Python's mmap module before 3.13)
_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22 if sys.platform.startswith("linux") else None)
_PCAP_MAGICS = {0xA1B2C3D4: 1000, 0xA1B23C4D: 1}  # -> ns per sub-second unit
_PCAPNG_SHB = 0x0A0D0D0A


@dataclass
class PacketBatch:
    """Packets of one chunk: arrays of equal length indexing into the ``data`` buffer."""

    data: bytes
    ts_ns: np.ndarray
    caplen: np.ndarray
    wirelen: np.ndarray
    linktype: np.ndarray
    offset: np.ndarray
    #: reader-level problems met while reading this chunk, by reason (not packets of the batch)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ts_ns)

    def __getitem__(self, index: slice) -> "PacketBatch":
        if not isinstance(index, slice):
            raise TypeError("PacketBatch supports slicing only; use packet(i) for one packet")
        start = index.indices(len(self))[0]
        # reader-level problems travel with the slice that starts the chunk, so they count once
        return PacketBatch(self.data, self.ts_ns[index], self.caplen[index], self.wirelen[index],
                           self.linktype[index], self.offset[index], dict(self.skipped) if start == 0 else {})

    def packet(self, i: int) -> bytes:
        """The captured bytes of packet ``i`` (for tests and debugging, not hot paths)."""
        start = int(self.offset[i])
        return self.data[start:start + int(self.caplen[i])]

    @staticmethod
    def from_packets(packets: list[tuple[int, bytes]], linktype: int = 1,
                     wirelen: list[int] | None = None) -> "PacketBatch":
        """A batch from (ts_ns, frame bytes) pairs: handy for tests and synthetic traffic."""
        lengths = np.array([len(p) for _, p in packets], dtype=np.int64)
        offsets = (np.cumsum(lengths) - lengths).astype(np.int64)
        wire = np.array(wirelen if wirelen is not None else lengths, dtype=np.int64)
        return PacketBatch(b"".join(p for _, p in packets), np.array([t for t, _ in packets], dtype=np.int64),
                           lengths, wire, np.full(len(packets), linktype, dtype=np.uint16), offsets)


class _Chunker:
    """Collects record positions of one chunk and turns them into a PacketBatch."""

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.cap: list[int] = []
        self.wire: list[int] = []
        self.link: list[int] = []
        self.off: list[int] = []

    def __len__(self) -> int:
        return len(self.ts)

    def batch(self, data: bytes, skipped: dict[str, int]) -> PacketBatch:
        out = PacketBatch(data, np.array(self.ts, dtype=np.int64), np.array(self.cap, dtype=np.int64),
                          np.array(self.wire, dtype=np.int64), np.array(self.link, dtype=np.uint16),
                          np.array(self.off, dtype=np.int64), dict(skipped))
        self.__init__()  # type: ignore[misc]  # this class only: empty the lists for the next batch
        return out


def _open(source: str | Path | IO[bytes]) -> tuple[IO[bytes], bool]:
    if isinstance(source, (str, Path)):
        if str(source) == "-":
            return sys.stdin.buffer, False
        try:
            return open(source, "rb"), True
        except OSError as exc:
            raise CaptureError(f"{source}: cannot open: {exc.strerror or exc}") from None
    if not hasattr(source, "read"):
        raise CaptureError(f"not a capture source: {type(source).__name__}")
    return source, False


def read_some(stream: IO[bytes]) -> bytes:
    """Up to _READ_BYTES bytes, without waiting for more than one read on a pipe (``tcpdump -w -``)."""
    read1 = getattr(stream, "read1", None)
    return read1(_READ_BYTES) if read1 is not None else stream.read(_READ_BYTES)


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        piece = stream.read(n - got)
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


def read_capture(source: str | Path | IO[bytes], chunk_packets: int = 65536) -> Iterator[PacketBatch]:
    """Yield PacketBatch chunks of at most ``chunk_packets`` packets from a pcap or pcapng source."""
    if chunk_packets < 1:
        raise ValueError("chunk_packets must be positive")
    stream, owned = _open(source)
    name = getattr(stream, "name", str(source))
    try:
        head = _read_exact(stream, 24)
        if len(head) < 4:
            raise CaptureError(f"{name}: not a capture (file is empty or shorter than a header)")
        (magic_le,) = struct.unpack_from("<I", head)
        if magic_le == _PCAPNG_SHB:
            yield from _read_pcapng(stream, head, chunk_packets, name)
            return
        for order in ("<", ">"):
            (magic,) = struct.unpack_from(order + "I", head)
            if magic in _PCAP_MAGICS:
                if len(head) < 24:
                    raise CaptureError(f"{name}: pcap header is truncated")
                linktype = struct.unpack_from(order + "I", head, 20)[0] & 0xFFFF
                yield from _read_pcap(stream, order, _PCAP_MAGICS[magic], linktype, chunk_packets, owned)
                return
        raise CaptureError(f"{name}: not a pcap or pcapng capture (magic {head[:4].hex()})")
    finally:
        if owned:
            stream.close()


def _framed(buf, pos: int, end: int, order: str, sub_ns: int, linktype: int,
            chunk_packets: int) -> Generator[PacketBatch, None, tuple[int, bool, int]]:
    """PacketBatch chunks of the whole records in ``buf[pos:end]``, each framed by its own walk of
    ``chunk_packets`` records (its columns sized to a chunk: memory the allocator reuses, not
    fresh pages per window). Returns (where the walk stopped, framing held, records).

    A framing break (an absurd captured length) is counted on the last chunk, empty if need be.
    """
    count = 0
    while True:
        records = frame_records(buf, pos, end, order, sub_ns, chunk_packets)
        n = len(records.heads)
        count += n
        pos = records.end
        skipped = {} if records.framed else {"bad_record_length": 1}  # reading resumes at the next good record
        if n or skipped:
            yield PacketBatch(buf, records.ts_ns, records.caplen, records.wirelen,
                              np.full(n, linktype, dtype=np.uint16), records.heads + 16, skipped)
        if n < chunk_packets or not records.framed:
            return pos, records.framed, count


def _read_pcap(stream: IO[bytes], order: str, sub_ns: int, linktype: int,
               chunk_packets: int, mappable: bool = False) -> Iterator[PacketBatch]:
    frac_limit = 1_000_000_000 // sub_ns
    if mappable:
        windows = _mapped(stream)
        if windows is not None:
            yield from _read_mapped(windows, order, sub_ns, frac_limit, linktype, chunk_packets)
            return
    buf, sec_ref, hunting = b"", None, False
    while True:
        more = read_some(stream)
        buf = buf + more if buf else more
        if hunting:  # after a corrupt record length: find the next plausible record
            at, keep = resync(buf, 0, len(buf), order, frac_limit, sec_ref or 0)
            if at is None:
                if not more:
                    return
                buf = buf[keep:]
                continue
            buf, hunting = buf[at:], False
        if sec_ref is None and len(buf) >= 4:
            sec_ref = struct.unpack_from(order + "I", buf)[0]
        stop, framed, _ = yield from _framed(buf, 0, len(buf), order, sub_ns, linktype, chunk_packets)
        buf = buf[stop:]
        if not framed:
            buf, hunting = buf[1:], True
            continue
        if not more:
            if buf:
                yield _Chunker().batch(b"", {"truncated_record": 1})
            return


def _mapped(stream: IO[bytes]):
    """(file descriptor, first record position) when ``stream`` is a regular file that can be mapped."""
    try:
        fd = stream.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return fd, stream.tell()
    except (OSError, ValueError, AttributeError):
        return None


def _read_mapped(where: tuple[int, int], order: str, sub_ns: int, frac_limit: int, linktype: int,
                 chunk_packets: int) -> Iterator[PacketBatch]:
    """Frame a regular file through read-only memory maps of _WINDOW_BYTES (no copy of the packets).

    Each chunk's ``data`` is its window's map; a window is unmapped once no chunk refers to it.
    The file size is read again at the end, so a file that grew while being read is read on.
    """
    fd, pos = where
    want = _WINDOW_BYTES
    sec_ref, hunting = None, False
    while True:
        size = os.fstat(fd).st_size
        if pos >= size:
            return
        base = pos - pos % mmap.ALLOCATIONGRANULARITY
        length = min(size - base, want)
        try:
            window = mmap.mmap(fd, length, offset=base, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise CaptureError(f"cannot map the capture: {exc}") from None
        _populate(window)
        if hunting:
            at, keep = resync(window, pos - base, length, order, frac_limit, sec_ref or 0)
            if at is None:
                if base + length >= size:
                    return
                want = want * 2 if base + keep <= pos else _WINDOW_BYTES  # a candidate needs a larger window
                pos = max(pos, base + keep)
                continue
            pos, hunting = base + at, False
        if sec_ref is None and pos - base + 16 <= length:
            sec_ref = struct.unpack_from(order + "I", window, pos - base)[0]
        stop, framed, count = yield from _framed(window, pos - base, length, order, sub_ns, linktype, chunk_packets)
        pos = base + stop
        if not framed:
            pos, hunting = pos + 1, True
            continue
        if base + length >= size:  # at the end of the file as it is now
            if pos < size and os.fstat(fd).st_size == size:
                yield _Chunker().batch(b"", {"truncated_record": 1})
                return
        want = _WINDOW_BYTES if count else want * 2  # a record larger than the window


def _populate(window: mmap.mmap) -> None:
    """Map every page of a window in one call: the walk reads all of them in order, and page
    faults taken one by one (each mapping 16 pages of the cached file) cost more CPU. Nothing
    changes but the cost where the kernel lacks MADV_POPULATE_READ (or the file is not cached)."""
    if _POPULATE_READ is not None:
        try:
            window.madvise(_POPULATE_READ)
        except (OSError, ValueError):
            pass


def _count(skipped: dict[str, int], reason: str) -> None:
    """Record a reader-level problem; the decoder turns batch.skipped into the skipped metric."""
    skipped[reason] = skipped.get(reason, 0) + 1


def _read_pcapng(stream: IO[bytes], head: bytes, chunk_packets: int, name: str) -> Iterator[PacketBatch]:
    from finsa.collectors.pcap.pcapng import PcapngReader  # one format per module

    yield from PcapngReader(stream, head, chunk_packets, name, _count).batches()
