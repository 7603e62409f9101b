"""The AF_PACKET socket under a live capture: TPACKET_V3 ring request, bind, fanout, counters.

Each function is one step of setting a capture socket up, in the order that loses nothing and
lets nothing unfiltered in: :func:`open_ring_socket` (protocol 0, so nothing is queued yet;
``PACKET_VERSION`` = TPACKET_V3; ``PACKET_RX_RING``), then the caller maps the ring and
:func:`bind_capture` installs the filter, binds to the interface for every protocol, turns on
promiscuous mode and joins a ``PACKET_FANOUT`` hash group. :func:`kernel_stats` reads (and so
resets) ``PACKET_STATISTICS``; :func:`detach` stops the flow of packets before a final read.

>>> LINKTYPES[1], LINKTYPES[0xFFFE]  # Ethernet, and a tunnel's bare IP packets
(1, 101)
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Callable

from finsa.collectors.live.bpf import accept_all, attach_filter
from finsa.errors import CaptureError

__all__ = ["open_ring_socket", "bind_capture", "kernel_stats", "detach", "hardware_type", "LINKTYPES",
           "FRAME_BYTES"]

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP, PACKET_RX_RING, PACKET_STATISTICS = 1, 5, 6
PACKET_VERSION, PACKET_FANOUT = 10, 18
TPACKET_V3 = 2
PACKET_MR_PROMISC = 1
PACKET_FANOUT_HASH, PACKET_FANOUT_FLAG_DEFRAG = 0, 0x8000
ETH_P_ALL = 0x0003
#: nominal frame size of the ring request (V3 packs variable-size frames; it only must divide blocks)
FRAME_BYTES = 2048
_STATS = struct.Struct("=III")
#: ARPHRD_* hardware type -> pcap link type of what a SOCK_RAW packet socket reads
LINKTYPES = {1: 1, 6: 1, 772: 1, 512: 101, 519: 101, 768: 101, 769: 101, 776: 101, 778: 101,
             823: 101, 0xFFFE: 101}


def open_ring_socket(interface: str, block_size: int, block_count: int, block_timeout_ms: int) -> socket.socket:
    """A packet socket with a TPACKET_V3 receive ring of ``block_count`` x ``block_size`` bytes."""
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: nothing queued yet
    except PermissionError:
        raise CaptureError(f"capturing on {interface} needs root or CAP_NET_RAW") from None
    try:
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        req = struct.pack("=7I", block_size, block_count, FRAME_BYTES, block_size * block_count // FRAME_BYTES,
                          block_timeout_ms, 0, 0)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
    except OSError as exc:
        sock.close()
        raise CaptureError(f"{interface}: the kernel refused a {block_count} x {block_size} byte ring: "
                           f"{exc.strerror or exc}") from None
    return sock


def hardware_type(interface: str) -> int:
    """The ARPHRD type of an interface, read through a throw-away packet socket's address."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as probe:
        probe.bind((interface, 0))
        return probe.getsockname()[3]


def bind_capture(sock: socket.socket, interface: str, program_for: Callable[[int], bytes],
                 promiscuous: bool, fanout_group: int | None, where: str = "") -> int:
    """Filter (``program_for(linktype)``), bind, promiscuous mode, fanout; the pcap link type."""
    try:
        ifindex = socket.if_nametoindex(interface)
    except OSError:
        raise CaptureError(f"no interface {interface!r}{where}") from None
    hatype = hardware_type(interface)
    if hatype not in LINKTYPES:
        raise CaptureError(f"{interface}: link type ARPHRD {hatype} is not supported")
    attach_filter(sock, program_for(LINKTYPES[hatype]))
    try:
        sock.bind((interface, ETH_P_ALL))
        if promiscuous:
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, struct.pack("=iHH8s", ifindex, PACKET_MR_PROMISC, 0, b""))
        if fanout_group is not None:
            mode = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG  # symmetric hash: a flow's both directions
            sock.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("=I", fanout_group | (mode << 16)))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EINVAL and fanout_group is not None:
            reason += " (a fanout group's sockets must all use the same mode and interface)"
        raise CaptureError(f"{interface}: cannot start capture: {reason}") from None
    return LINKTYPES[hatype]


def kernel_stats(sock: socket.socket) -> tuple[int, int, int]:
    """(packets, drops, freezes) since the last call: the kernel resets them when read."""
    return _STATS.unpack(sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size))


def detach(sock: socket.socket, interface: str, fanout: bool) -> None:
    """No more packets into the ring: unbind (synchronous), or for a fanout member drop all."""
    try:
        if fanout:
            attach_filter(sock, accept_all(0))  # the kernel cannot unbind a fanout member
        else:
            sock.bind((interface, 0))
    except OSError as exc:
        raise CaptureError(f"{interface}: cannot stop receiving: {exc.strerror or exc}") from None
