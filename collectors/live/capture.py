"""Live capture on a Linux interface: AF_PACKET with a memory-mapped TPACKET_V3 ring.

:class:`LiveCapture` opens a raw packet socket, asks the kernel for a ring of ``block_count``
blocks of ``block_size`` bytes (``PACKET_RX_RING``, ``TPACKET_V3``), maps it, installs a classic
BPF filter (an expression compiled by libpcap or tcpdump, or a ready program; the accept length
is capped at ``snaplen``), binds to the interface and optionally joins a ``PACKET_FANOUT`` hash
group so several processes share the interface's traffic, both directions of a flow landing in
the same process. :meth:`LiveCapture.batches` polls the socket and, for each block the kernel
retired (full, or after ``block_timeout_ms``), copies its used bytes, hands the block back and
yields one :class:`~finsa.collectors.pcap.capture.PacketBatch`: the same type the file readers yield,
so the flow meter cannot tell a live interface from a capture file.

The kernel's counters (``PACKET_STATISTICS``; reading resets them, so they are accumulated)
are exported as ``finsa_capture_kernel_packets_total`` (packets that passed the filter, dropped
ones included), ``finsa_capture_kernel_drops_total`` (lost because the ring was full) and
``finsa_capture_kernel_freezes_total``, all labelled by interface. Capturing needs root or
CAP_NET_RAW; without them :meth:`LiveCapture.start` raises :class:`finsa.errors.CaptureError`.

>>> cap = LiveCapture("eth0", bpf="1,6 0 0 65535", block_size=1 << 20, block_count=4)
>>> cap.ring_bytes, cap.running
(4194304, False)
"""

from __future__ import annotations

import mmap
import select
import socket
import struct
import threading
import time
from typing import Iterator, Sequence

from finsa.collectors.live.bpf import accept_all, cap_snaplen, compile_filter, parse_program
from finsa.collectors.live.netns import in_netns
from finsa.collectors.live.ring import (BLOCK_STATUS_OFFSET, TP_STATUS_KERNEL, TP_STATUS_USER,
                                        concat_batches, empty_batch, parse_block)
from finsa.collectors.live.packet_socket import FRAME_BYTES, bind_capture, detach, kernel_stats, open_ring_socket
from finsa.collectors.pcap.capture import PacketBatch
from finsa.errors import CaptureError
from finsa.metrics import REGISTRY

__all__ = ["LiveCapture", "KERNEL_PACKETS", "KERNEL_DROPS", "KERNEL_FREEZES", "CAPTURED_PACKETS"]

KERNEL_PACKETS = REGISTRY.counter("finsa_capture_kernel_packets_total",
                                  "Packets the kernel passed to a capture socket, dropped ones included",
                                  ["interface"])
KERNEL_DROPS = REGISTRY.counter("finsa_capture_kernel_drops_total",
                                "Packets the kernel dropped because the capture ring was full", ["interface"])
KERNEL_FREEZES = REGISTRY.counter("finsa_capture_kernel_freezes_total",
                                  "Times the kernel froze the capture ring queue", ["interface"])
CAPTURED_PACKETS = REGISTRY.counter("finsa_capture_packets_total",
                                    "Packets read from the capture ring into batches", ["interface"])

_STATUS = struct.Struct("=I")
_NUM_PKTS_OFFSET = 12
_STATS_EVERY_S = 1.0


def _validate(interface: str, fanout_group: int | None, block_size: int, block_count: int,
              snaplen: int, block_timeout_ms: int) -> None:
    problems = []
    if not interface or len(interface.encode()) > 15 or "/" in interface:
        problems.append(f"interface {interface!r} is not an interface name")
    if fanout_group is not None and not 0 <= fanout_group <= 0xFFFF:
        problems.append(f"fanout_group {fanout_group} is not in 0..65535")
    if block_size <= 0 or block_size % mmap.PAGESIZE or block_size % FRAME_BYTES:
        problems.append(f"block_size {block_size} is not a positive multiple of {max(mmap.PAGESIZE, FRAME_BYTES)}")
    if not 1 <= block_count <= 1 << 16:
        problems.append(f"block_count {block_count} is not in 1..65536")
    if not 64 <= snaplen <= 262144 or snaplen > block_size - 256:
        problems.append(f"snaplen {snaplen} is not in 64..262144 or does not fit a block")
    if not 1 <= block_timeout_ms <= 60_000:
        problems.append(f"block_timeout_ms {block_timeout_ms} is not in 1..60000")
    if problems:
        raise CaptureError("live capture refused: " + "; ".join(problems))


class LiveCapture:
    """Capture from one interface through a TPACKET_V3 ring; a context manager.

    ``bpf`` is a pcap filter expression, a program as ``tcpdump -dd``/``-ddd`` text, packed
    bytes or ``(code, jt, jf, k)`` tuples, or ``None`` for everything. ``fanout_group`` joins a
    hash fanout group: sockets of one group (in one network namespace) split the traffic by
    flow. ``netns`` names a network namespace (``ip netns`` name or path) to capture in.
    """

    def __init__(self, interface: str, bpf: str | bytes | Sequence[tuple[int, int, int, int]] | None = None,
                 fanout_group: int | None = None, block_size: int = 1 << 22, block_count: int = 64,
                 snaplen: int = 65535, *, block_timeout_ms: int = 50, promiscuous: bool = True,
                 netns: str | None = None) -> None:
        _validate(interface, fanout_group, block_size, block_count, snaplen, block_timeout_ms)
        self.interface, self.fanout_group, self.netns = interface, fanout_group, netns
        self.block_size, self.block_count, self.snaplen = block_size, block_count, snaplen
        self.block_timeout_ms, self.promiscuous = block_timeout_ms, promiscuous
        self._bpf = bpf
        self._program = self._build_program(bpf)  # a bad filter is refused here, not at start
        self._sock: socket.socket | None = None
        self._ring: mmap.mmap | None = None
        self._lock = threading.Lock()
        self._next_block = 0
        self.linktype = 1
        self._totals = {"kernel_packets": 0, "kernel_drops": 0, "kernel_freezes": 0,
                        "packets": 0, "bytes": 0, "blocks": 0}
        self._stats_at = 0.0

    @property
    def ring_bytes(self) -> int:
        return self.block_size * self.block_count

    @property
    def running(self) -> bool:
        return self._sock is not None

    def _build_program(self, bpf: object, linktype: int = 1) -> bytes:
        if bpf is None:
            return accept_all(self.snaplen)
        if _is_expression(bpf):
            return compile_filter(bpf, linktype, self.snaplen)  # type: ignore[arg-type]  # _is_expression: a str
        return cap_snaplen(parse_program(bpf), self.snaplen)  # type: ignore[arg-type]  # parse_program refuses the rest

    def start(self) -> "LiveCapture":
        """Open the socket and ring, install the filter, bind, join the fanout group."""
        if self._sock is not None:
            return self
        sock = in_netns(self.netns, lambda: open_ring_socket(self.interface, self.block_size, self.block_count,
                                                             self.block_timeout_ms))
        try:
            self._ring = mmap.mmap(sock.fileno(), self.ring_bytes, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE)
            where = f" in network namespace {self.netns}" if self.netns else ""
            self.linktype = in_netns(self.netns, lambda: bind_capture(
                sock, self.interface, self._program_for, self.promiscuous, self.fanout_group, where))
        except BaseException:
            if self._ring is not None:
                self._ring.close()
                self._ring = None
            sock.close()
            raise
        self._sock, self._next_block = sock, 0
        return self

    def _program_for(self, linktype: int) -> bytes:
        if linktype != 1 and _is_expression(self._bpf):
            return self._build_program(self._bpf, linktype)  # expressions compile per link type
        return self._program

    def batches(self, timeout_ms: int = 100, stop_when_idle: bool = False,
                max_blocks: int = 1) -> Iterator[PacketBatch]:
        """One batch per retired ring block, in arrival order.

        When nothing arrives within ``timeout_ms`` an empty batch is yielded (so a meter can
        expire idle flows), or, with ``stop_when_idle``, the iteration ends. It also ends
        when :meth:`stop` is called, from this thread or another. With ``max_blocks`` > 1,
        blocks already waiting are joined into one batch (up to that many): a consumer that fell
        behind then gets fewer, larger batches, which vectorised code digests faster.
        """
        if self._sock is None:
            raise CaptureError("LiveCapture.batches() before start()")
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN | select.POLLERR)
        while True:
            batch = self._take_block()
            if batch is None:
                if self._sock is None:
                    return
                if poller.poll(timeout_ms) or self._ready():
                    continue
                self._refresh_stats()
                if stop_when_idle:
                    return
                batch = empty_batch()
            else:
                batch = self._join_waiting(batch, max_blocks)
                if time.monotonic() - self._stats_at >= _STATS_EVERY_S:
                    self._refresh_stats()
            yield batch

    def _join_waiting(self, batch: PacketBatch, max_blocks: int) -> PacketBatch:
        parts = [batch]
        while len(parts) < max_blocks and (more := self._take_block()) is not None:
            parts.append(more)
        return parts[0] if len(parts) == 1 else concat_batches(parts)

    def _ready(self) -> bool:
        with self._lock:
            return self._ring is not None and self._status(self._next_block) & TP_STATUS_USER != 0

    def _status(self, block: int) -> int:
        return _STATUS.unpack_from(self._ring, block * self.block_size + BLOCK_STATUS_OFFSET)[0]  # type: ignore[arg-type]  # callers hold a mapped ring

    def _take_block(self) -> PacketBatch | None:
        """Copy the next block if the kernel retired it, hand it back, parse the copy."""
        with self._lock:
            ring = self._ring
            if ring is None or self._status(self._next_block) & TP_STATUS_USER == 0:
                return None
            start = self._next_block * self.block_size
            blk_len = min(_STATUS.unpack_from(ring, start + 20)[0], self.block_size)
            block = ring[start:start + blk_len]
            _STATUS.pack_into(ring, start + _NUM_PKTS_OFFSET, 0)  # so a stale count never reads as live
            _STATUS.pack_into(ring, start + BLOCK_STATUS_OFFSET, TP_STATUS_KERNEL)
            self._next_block = (self._next_block + 1) % self.block_count
        return self._count(parse_block(block, self.linktype))

    def _count(self, batch: PacketBatch) -> PacketBatch:
        self._totals["blocks"] += 1
        self._totals["packets"] += len(batch)
        self._totals["bytes"] += int(batch.caplen.sum())
        CAPTURED_PACKETS.inc(len(batch), interface=self.interface)
        return batch

    def drain(self) -> Iterator[PacketBatch]:
        """Stop receiving, yield all the ring still holds (the block being filled too), then stop.

        Without it, packets in the block the kernel is filling are lost at :meth:`stop`: up to
        ``block_timeout_ms`` of traffic.
        """
        if self._sock is None:
            return
        detach(self._sock, self.interface, self.fanout_group is not None)
        while (batch := self._take_block()) is not None:
            yield batch
        with self._lock:
            ring, start = self._ring, self._next_block * self.block_size
            count = _STATUS.unpack_from(ring, start + _NUM_PKTS_OFFSET)[0] if ring is not None else 0
            blk_len = min(_STATUS.unpack_from(ring, start + 20)[0], self.block_size) if count else 0  # type: ignore[arg-type]  # count > 0 only with a ring
            block = ring[start:start + blk_len] if count else b""  # type: ignore[index]  # count > 0 only with a ring
        if block:
            batch = self._count(parse_block(block, self.linktype, partial=True))
            if len(batch):
                yield batch
        self.stop()

    def _refresh_stats(self) -> None:
        """Read (and so reset) the kernel counters; add them to totals and metrics."""
        self._stats_at = time.monotonic()
        with self._lock:
            if self._sock is None:
                return
            packets, drops, freezes = kernel_stats(self._sock)
        self._totals["kernel_packets"] += packets
        self._totals["kernel_drops"] += drops
        self._totals["kernel_freezes"] += freezes
        KERNEL_PACKETS.inc(packets, interface=self.interface)
        KERNEL_DROPS.inc(drops, interface=self.interface)
        KERNEL_FREEZES.inc(freezes, interface=self.interface)

    def stats(self) -> dict[str, int | str]:
        """Kernel counters (accumulated since start) and what was read, for this socket."""
        self._refresh_stats()
        return {"interface": self.interface, **self._totals}

    def stop(self) -> None:
        """Read the last kernel counters, then close the ring and the socket."""
        if self._sock is None:
            return
        self._refresh_stats()
        with self._lock:
            sock, ring, self._sock, self._ring = self._sock, self._ring, None, None
        if ring is not None:
            ring.close()
        sock.close()

    def __enter__(self) -> "LiveCapture":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _is_expression(bpf: object) -> bool:
    """A str that is not tcpdump -dd/-ddd text is a filter expression."""
    if not isinstance(bpf, str):
        return False
    text = bpf.strip()
    return not (text.startswith("{") or (text[:1].isdigit() and "," in text and not any(c.isalpha() for c in text)))
