"""``python -m bench export``: NetFlow v9 and IPFIX decoding on exporter traffic, finsa next to nfcapd.

The corpus (:mod:`bench.export_corpus`) is what softflowd exported while metering every shared
capture: about 2,050 datagrams and 61,775 flow records per protocol (~30 records a datagram,
templates at softflowd's own cadence). Both tools get the same datagrams, repeated ``R`` times
(50; 5 with ``--quick``), in the same run:

- *finsa*: :class:`~finsa.collectors.export.decoder.ExportDecoder` ``feed`` of each datagram from
  memory, ``take()`` every 2,000 datagrams (FLOW batches built); CPU of this process.
- *nfcapd* (nfdump 1.7): the datagrams sent to it over loopback UDP (paced, 64 MiB socket
  buffer), its whole CPU from ``wait4`` after it flushed its file and exited (socket receive,
  decoding and the LZ-less nfcapd file write included); the records are counted in the file it
  wrote (``nfdump -I``), so a datagram the kernel dropped is not credited.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import time

from bench.export_corpus import ensure_tools, exporter_corpus, read_corpus
from bench.measure import Clock
from bench.report import Result, table

__all__ = ["run", "finsa_decode", "nfcapd_decode"]

_PROTOCOLS = {9: "NetFlow v9", 10: "IPFIX"}


def finsa_decode(datagrams: list[bytes], repeats: int, take_every: int = 2000) -> Result:
    """Decode ``datagrams`` ``repeats`` times with one ExportDecoder."""
    from finsa.collectors.export.decoder import ExportDecoder

    dec = ExportDecoder("bank-a", "edge-1", flow_id_base=1)
    records = fed = 0
    clock = Clock()
    for _ in range(repeats):
        for datagram in datagrams:
            dec.feed(datagram, "127.0.0.1", 1_772_442_000_000)
            fed += 1
            if fed % take_every == 0:
                records += len(dec.take() or ())
    records += len(dec.take() or ())
    return Result("finsa", records, clock.cpu_s, "cpu", f"{len(datagrams):,} datagrams x {repeats}, from memory")


def _nfdump_flows(directory: str) -> int:
    total = 0
    for name in os.listdir(directory):
        out = subprocess.run(["nfdump", "-r", os.path.join(directory, name), "-I"], capture_output=True, text=True)
        found = re.search(r"^Flows:\s+(\d+)", out.stdout, re.MULTILINE)
        total += int(found.group(1)) if found else 0
    return total


def nfcapd_decode(datagrams: list[bytes], repeats: int) -> Result:
    """Send the datagrams ``repeats`` times to a fresh nfcapd; its CPU and the records it stored."""
    ensure_tools("nfcapd", "nfdump")
    with tempfile.TemporaryDirectory() as out, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        proc = subprocess.Popen(["nfcapd", "-w", out, "-b", "127.0.0.1", "-p", str(port), "-B", str(1 << 26),
                                 "-t", "3600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # bound and listening
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 24)
        sent = 0
        for _ in range(repeats):
            for datagram in datagrams:
                sock.sendto(datagram, ("127.0.0.1", port))
                sent += 1
                if sent % 200 == 0:
                    time.sleep(0.001)  # pacing: the receive buffer never fills
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0
        records = _nfdump_flows(out)
    return Result("nfcapd (nfdump 1.7)", records, usage.ru_utime + usage.ru_stime, "cpu",
                  f"{sent:,} datagrams over loopback UDP; whole process (receive, decode, file)")


def run(quick: bool) -> list[str]:
    repeats = 5 if quick else 50
    tables = []
    for version, name in _PROTOCOLS.items():
        datagrams = read_corpus(exporter_corpus(version))
        results = [finsa_decode(datagrams, repeats), nfcapd_decode(datagrams, repeats)]
        tables.append(table(f"export: {name} decoding, softflowd's export of the shared captures "
                            f"(records per CPU second)", "record", results))
    return tables
