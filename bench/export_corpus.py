"""Export traffic made by a real exporter from real captures, for the export-decoding benchmark.

Debian's ``softflowd`` (1.1.0) meters each capture of ``../shared/data`` (``-r FILE``) and exports
NetFlow v9 (``-v 9``) or IPFIX (``-v 10``) to a UDP socket of this process on loopback; the
datagrams are kept as they arrived (templates, options and data sets in the exporter's own
order and cadence). Nothing is hand-written. The corpus is cached in the benchmark cache as a
sequence of (u32 big-endian length, datagram) pairs; :func:`read_corpus` reads it back.

softflowd and nfdump are installed with apt-get on first use when missing (said on stderr).
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from bench.synth import cache_dir

__all__ = ["ensure_tools", "exporter_corpus", "read_corpus", "DATA"]

DATA = Path("/work/shared/data")
_LEN = struct.Struct(">I")


def ensure_tools(*commands: str) -> None:
    """Install the Debian packages of missing exporter/collector commands (on demand, said so)."""
    packages = {"softflowd": "softflowd", "nfcapd": "nfdump", "nfdump": "nfdump", "pmacctd": "pmacct"}
    missing = sorted({packages[c] for c in commands if shutil.which(c) is None})
    if missing:
        print(f"# bench: installing Debian packages {' '.join(missing)} (apt-get)", file=sys.stderr, flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, capture_output=True)


def captures(data: Path = DATA) -> list[Path]:
    """Every pcap/pcapng of the shared data (flows, attacks, benign), sorted."""
    return sorted(p for sub in ("flows", "attacks", "benign") for p in (data / sub).rglob("*")
                  if p.suffix in (".pcap", ".pcapng") and p.is_file())


def _export(capture: Path, version: int, timeout_s: float = 60.0) -> list[bytes]:
    """The datagrams softflowd exports while reading ``capture``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 25)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.5)
        port = sock.getsockname()[1]
        proc = subprocess.Popen(["softflowd", "-d", "-r", str(capture), "-n", f"127.0.0.1:{port}", "-v", str(version)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        got: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                got.append(sock.recv(65535))
            except socket.timeout:
                if proc.poll() is not None:
                    break
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        return got


def exporter_corpus(version: int, cache: str | Path | None = None) -> Path:
    """Path of the cached corpus of softflowd's NetFlow v9 (9) or IPFIX (10) datagrams."""
    path = cache_dir(cache) / f"export-softflowd-v{version}.bin"
    if path.exists():
        return path
    ensure_tools("softflowd")
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as out:
        for capture in captures():
            for datagram in _export(capture, version):
                out.write(_LEN.pack(len(datagram)) + datagram)
    tmp.rename(path)
    return path


def read_corpus(path: str | Path) -> list[bytes]:
    """The datagrams of a corpus file, in order."""
    data = Path(path).read_bytes()
    out, pos = [], 0
    while pos + 4 <= len(data):
        (n,) = _LEN.unpack_from(data, pos)
        out.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    return out
