"""Classic BPF programs for capture sockets: compile, parse, cap the snap length, attach.

A program is the kernel's ``struct sock_filter`` array packed as bytes (8 bytes per instruction:
``u16 code, u8 jt, u8 jf, u32 k``). :func:`compile_filter` turns a pcap filter expression
("tcp port 443 and net 10.0.0.0/8") into one with libpcap's compiler, loaded with ctypes, or,
when libpcap cannot be loaded, with ``tcpdump -dd``. :func:`parse_program` also accepts programs
written out already: ``tcpdump -dd`` C text, ``tcpdump -ddd`` decimal text (the form
``iptables -m bpf`` and ``tc`` take), or a list of ``(code, jt, jf, k)`` tuples.
:func:`cap_snaplen` rewrites "accept k bytes" returns so the kernel copies at most ``snaplen``
bytes of a packet, and :func:`attach_filter` installs a program with ``SO_ATTACH_FILTER``.

>>> prog = parse_program("1,6 0 0 65535")  # -ddd form: "accept everything"
>>> instructions(cap_snaplen(prog, 96))
[(6, 0, 0, 96)]
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import shutil
import socket
import struct
import subprocess
from typing import Sequence

from finsa.errors import CaptureError

__all__ = ["compile_filter", "parse_program", "cap_snaplen", "attach_filter", "instructions",
           "accept_all", "LINKTYPE_ETHERNET"]

LINKTYPE_ETHERNET = 1
SO_ATTACH_FILTER = 26
_INSN = struct.Struct("=HBBI")
_BPF_RET_K = 0x06
_BPF_MAXINSNS = 4096
_PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
_DD_LINE = re.compile(r"\{\s*(0x[0-9a-fA-F]+),\s*(\d+),\s*(\d+),\s*(0x[0-9a-fA-F]+)\s*\}")


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def instructions(program: bytes) -> list[tuple[int, int, int, int]]:
    """The (code, jt, jf, k) tuples of a packed program."""
    return list(_INSN.iter_unpack(program))


def _pack(insns: Sequence[tuple[int, int, int, int]]) -> bytes:
    if not 0 < len(insns) <= _BPF_MAXINSNS:
        raise CaptureError(f"a BPF program has 1 to {_BPF_MAXINSNS} instructions, not {len(insns)}")
    try:
        return b"".join(_INSN.pack(*insn) for insn in insns)
    except struct.error as exc:
        raise CaptureError(f"bad BPF instruction: {exc}") from None


def accept_all(snaplen: int) -> bytes:
    """The one-instruction program that accepts every packet, ``snaplen`` bytes of it."""
    return _pack([(_BPF_RET_K, 0, 0, snaplen)])


def parse_program(program: str | bytes | Sequence[tuple[int, int, int, int]]) -> bytes:
    """A packed program from bytes, (code, jt, jf, k) tuples, or ``tcpdump -dd``/``-ddd`` text."""
    if isinstance(program, (bytes, bytearray, memoryview)):
        raw = bytes(program)
        if not raw or len(raw) % _INSN.size:
            raise CaptureError(f"a packed BPF program is a multiple of 8 bytes, not {len(raw)}")
        return _pack(instructions(raw))
    if not isinstance(program, str):
        return _pack([tuple(int(v) for v in insn) for insn in program])  # type: ignore[misc]  # 4-tuples: _pack checks
    dd = _DD_LINE.findall(program)
    if dd:
        return _pack([(int(c, 16), int(t), int(f), int(k, 16)) for c, t, f, k in dd])
    fields = [part.split() for part in re.split(r"[,\n]", program.strip()) if part.strip()]
    try:
        count, rows = int(fields[0][0]), [tuple(int(v) for v in row) for row in fields[1:]]
    except (ValueError, IndexError):
        raise CaptureError(f"not a BPF program in tcpdump -dd or -ddd form: {program[:60]!r}") from None
    if len(fields[0]) != 1 or count != len(rows) or any(len(r) != 4 for r in rows):
        raise CaptureError(f"malformed tcpdump -ddd program: {program[:60]!r}")
    return _pack(rows)  # type: ignore[arg-type]  # four fields per row, checked just above


def cap_snaplen(program: bytes, snaplen: int) -> bytes:
    """The program with every ``ret #k`` (k > 0) lowered to at most ``snaplen`` bytes."""
    out = [(c, t, f, min(k, snaplen) if c == _BPF_RET_K and k else k) for c, t, f, k in instructions(program)]
    return _pack(out)


def _libpcap() -> ctypes.CDLL | None:
    for name in (ctypes.util.find_library("pcap"), "libpcap.so.1", "libpcap.so.0.8", "libpcap.so"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_BpfProgram), ctypes.c_char_p,
                                     ctypes.c_int, ctypes.c_uint32]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        return lib
    return None


def _compile_libpcap(lib: ctypes.CDLL, expr: str, linktype: int, snaplen: int) -> bytes:
    handle = lib.pcap_open_dead(linktype, snaplen)
    if not handle:
        raise CaptureError("libpcap could not open a dead handle to compile a filter")
    prog = _BpfProgram()
    try:
        if lib.pcap_compile(handle, ctypes.byref(prog), expr.encode(), 1, _PCAP_NETMASK_UNKNOWN) != 0:
            reason = (lib.pcap_geterr(handle) or b"").decode(errors="replace")
            raise CaptureError(f"bad capture filter {expr!r}: {reason}")
        raw = ctypes.string_at(prog.bf_insns, prog.bf_len * _INSN.size)
        lib.pcap_freecode(ctypes.byref(prog))
        return _pack(instructions(raw))
    finally:
        lib.pcap_close(handle)


def _compile_tcpdump(tcpdump: str, expr: str, linktype: int, snaplen: int) -> bytes:
    if linktype != LINKTYPE_ETHERNET:
        raise CaptureError("tcpdump -dd compiles for Ethernet only; install libpcap for other link types")
    done = subprocess.run([tcpdump, "-dd", "-s", str(snaplen), "--", expr], capture_output=True,
                          text=True, timeout=30, check=False)  # -dd needs no interface and no root
    if done.returncode != 0:
        raise CaptureError(f"bad capture filter {expr!r}: {done.stderr.strip()}")
    return parse_program(done.stdout)


def compile_filter(expr: str, linktype: int = LINKTYPE_ETHERNET, snaplen: int = 65535) -> bytes:
    """Compile a pcap filter expression into a packed program (libpcap, else ``tcpdump -dd``)."""
    lib = _libpcap()
    if lib is not None:
        return _compile_libpcap(lib, expr, linktype, snaplen)
    tcpdump = shutil.which("tcpdump")
    if tcpdump is not None:
        return _compile_tcpdump(tcpdump, expr, linktype, snaplen)
    raise CaptureError("compiling a capture filter needs libpcap (apt: libpcap0.8) or tcpdump; "
                       "or pass the program as tcpdump -ddd text")


def attach_filter(sock: socket.socket, program: bytes) -> None:
    """Install a packed program on a socket (``SO_ATTACH_FILTER``); the kernel copies it."""
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // _INSN.size, ctypes.addressof(buf))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
    except OSError as exc:
        raise CaptureError(f"the kernel refused the capture filter: {exc.strerror or exc}") from None
