"""pcapng block walking for :func:`finsa.collectors.pcap.capture.read_capture`.

Understands the Section Header (byte order per section), Interface Description (link type,
``if_tsresol``, ``if_tsoffset``), Enhanced, Simple and obsolete Packet blocks; other blocks are
skipped. Timestamps become nanoseconds since the epoch per interface resolution. A block whose
length is absurd or disagrees with its trailing copy is counted (``bad_block``) and the walk
resynchronises on the next block whose type is known and whose two lengths agree.
"""

from __future__ import annotations

import struct
from typing import IO, Callable, Iterator

from finsa.collectors.pcap.capture import PacketBatch, _Chunker, read_some
from finsa.errors import CaptureError

_SHB, _IDB, _PB, _SPB, _EPB = 0x0A0D0D0A, 1, 2, 3, 6
_MAX_BLOCK_BYTES = 256 << 20
#: Block types a resynchronisation may land on: SHB, IDB, PB, SPB, NRB, ISB, EPB, DSB.
_KNOWN_BLOCKS = frozenset({_SHB, _IDB, _PB, _SPB, 4, 5, _EPB, 10})
_MAX_NS = 2**63 - 1


class PcapngReader:
    """Walks the blocks of one pcapng stream; ``batches()`` yields PacketBatch chunks."""

    def __init__(self, stream: IO[bytes], head: bytes, chunk_packets: int, name: str,
                 count: Callable[[dict, str], None]) -> None:
        self.stream, self.buf, self.chunk_packets, self.name = stream, head, chunk_packets, name
        self.count = count
        self.order = "<"
        #: per interface: (linktype, ns per tick numerator, ticks per second, offset seconds)
        self.ifaces: list[tuple[int, int, int, int]] = []
        self.last_ts_ns = 0
        self.skipped: dict[str, int] = {}

    def batches(self) -> Iterator[PacketBatch]:
        first, hunting = True, False
        while True:
            more = read_some(self.stream)
            self.buf = self.buf + more if self.buf else more
            chunk = _Chunker()
            pos = 0
            while True:
                if hunting:  # after a corrupt block: on to the next block that checks out
                    at, keep = self._resync(pos)
                    if at is None:
                        pos = keep
                        break
                    pos, hunting = at, False
                step = self._block(pos, chunk, first)
                if step < 0:
                    hunting, pos = True, pos + 4
                    continue
                if step == 0:
                    break
                first = False
                pos += step
                if len(chunk) >= self.chunk_packets:
                    yield chunk.batch(self.buf[:pos], self._take_skipped())
                    self.buf, pos = self.buf[pos:], 0
            if len(chunk) or self.skipped:
                yield chunk.batch(self.buf[:pos], self._take_skipped())
            self.buf = self.buf[pos:]
            if not more:
                if self.buf and not hunting:
                    self.count(self.skipped, "truncated_record")
                    yield _Chunker().batch(b"", self._take_skipped())
                return

    def _resync(self, start: int) -> tuple[int | None, int]:
        """(position of the next block whose type is known and whose leading and trailing
        lengths agree, _) or (None, where to keep the buffer from until more data arrives)."""
        buf, order = self.buf, self.order
        pos = start
        while pos + 12 <= len(buf):
            btype, blen = struct.unpack_from(order + "II", buf, pos)
            if btype in _KNOWN_BLOCKS and 12 <= blen <= _MAX_BLOCK_BYTES and not blen % 4:
                if pos + blen > len(buf):
                    return None, pos
                if struct.unpack_from(order + "I", buf, pos + blen - 4)[0] == blen:
                    return pos, pos
            pos += 4
        return None, pos

    def _take_skipped(self) -> dict[str, int]:
        out, self.skipped = self.skipped, {}
        return out

    def _block(self, pos: int, chunk: _Chunker, first: bool) -> int:
        """Length of the block at ``pos`` after handling it; 0 when incomplete, -1 to stop."""
        buf = self.buf
        if pos + 12 > len(buf):
            return 0
        (btype,) = struct.unpack_from(self.order + "I", buf, pos)
        if btype == _SHB:
            magic = buf[pos + 8:pos + 12]
            if magic not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                if first:
                    raise CaptureError(f"{self.name}: pcapng section header has a bad byte-order magic")
                self.count(self.skipped, "bad_block")
                return -1
            self.order = "<" if magic == b"\x4d\x3c\x2b\x1a" else ">"
            self.ifaces = []
        (blen,) = struct.unpack_from(self.order + "I", buf, pos + 4)
        if blen < 12 or blen % 4 or blen > _MAX_BLOCK_BYTES:
            if first:
                raise CaptureError(f"{self.name}: not a valid pcapng capture (bad first block length)")
            self.count(self.skipped, "bad_block")
            return -1
        if pos + blen > len(buf):
            return 0
        if struct.unpack_from(self.order + "I", buf, pos + blen - 4)[0] != blen:  # the trailing copy
            if first:
                raise CaptureError(f"{self.name}: not a valid pcapng capture (block lengths disagree)")
            self.count(self.skipped, "bad_block")
            return -1
        body = pos + 8
        if btype == _IDB:
            self._interface(body, pos + blen - 4)
        elif btype in (_EPB, _PB):
            self._enhanced(body, pos + blen - 4, chunk, btype == _PB)
        elif btype == _SPB:
            self._simple(body, pos + blen - 4, chunk)
        return blen

    def _interface(self, body: int, end: int) -> None:
        if body + 8 > end:
            self.count(self.skipped, "bad_block")
            self.ifaces.append((0xFFFF, 1000, 1_000_000, 0))
            return
        linktype, _, _snaplen = struct.unpack_from(self.order + "HHI", self.buf, body)
        tick_ns, ticks_per_s, offset_s = 1000, 1_000_000, 0
        pos = body + 8
        while pos + 4 <= end:
            code, length = struct.unpack_from(self.order + "HH", self.buf, pos)
            if code == 0:
                break
            value = self.buf[pos + 4:pos + 4 + length]
            if code == 9 and length >= 1:
                res = value[0]
                ticks_per_s = (2 ** (res & 0x7F)) if res & 0x80 else 10 ** min(res, 18)
                tick_ns = 0
            elif code == 14 and length >= 8:
                (offset_s,) = struct.unpack_from(self.order + "q", value)
            pos += 4 + length + (-length % 4)
        self.ifaces.append((linktype, tick_ns, ticks_per_s, offset_s))

    def _ts_ns(self, iface: tuple[int, int, int, int], ticks: int) -> int:
        _, tick_ns, per_s, offset_s = iface
        if tick_ns:
            ns = ticks * tick_ns + offset_s * 1_000_000_000
        else:
            ns = (ticks * 1_000_000_000) // per_s + offset_s * 1_000_000_000
        return min(max(ns, 0), _MAX_NS)  # a hostile timestamp must not overflow int64

    def _enhanced(self, body: int, end: int, chunk: _Chunker, obsolete: bool) -> None:
        if body + 20 > end:
            self.count(self.skipped, "bad_block")
            return
        if obsolete:
            iface_id, _drops, hi, lo, cap, wire = struct.unpack_from(self.order + "HHIIII", self.buf, body)
        else:
            iface_id, hi, lo, cap, wire = struct.unpack_from(self.order + "IIIII", self.buf, body)
        if iface_id >= len(self.ifaces) or body + 20 + cap > end:
            self.count(self.skipped, "bad_block")
            return
        iface = self.ifaces[iface_id]
        self.last_ts_ns = self._ts_ns(iface, (hi << 32) | lo)
        chunk.ts.append(self.last_ts_ns)
        chunk.cap.append(cap)
        chunk.wire.append(wire)
        chunk.link.append(iface[0])
        chunk.off.append(body + 20)

    def _simple(self, body: int, end: int, chunk: _Chunker) -> None:
        if not self.ifaces or body + 4 > end:
            self.count(self.skipped, "bad_block")
            return
        (wire,) = struct.unpack_from(self.order + "I", self.buf, body)
        cap = min(wire, end - body - 4)
        chunk.ts.append(self.last_ts_ns)  # a simple packet block has no timestamp
        chunk.cap.append(cap)
        chunk.wire.append(wire)
        chunk.link.append(self.ifaces[0][0])
        chunk.off.append(body + 4)
