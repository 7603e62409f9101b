"""Measure live capture throughput: tcpreplay --topspeed into a veth inside a throw-away namespace.

Not a test: a measurement for humans. Needs root, ``ip`` and ``tcpreplay``. It writes a capture
of small UDP frames over many flows, creates ``finsa-bench-<random>`` with a veth pair (IPv6 off,
no addresses: nothing leaves the namespace), captures on one end with :class:`LiveCapture`
(optionally metering flows too) while tcpreplay sends into the other, and prints packets/s,
the kernel's drop counter and the host's softnet backlog drops. The namespace is always removed.

    python -m bench.live_capture --packets 2000000 [--meter] [--fanout 2] [--drain]

``--drain`` reads only once tcpreplay has finished (the ring must hold everything): the time
to empty the ring is the reader's own rate, independent of how fast tcpreplay can send.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from finsa.collectors.live.capture import LiveCapture
from finsa.collectors.pcap.writer import PcapWriter

_FRAME = bytes.fromhex("020000000002020000000001" "0800"
                       "4500002e0001000040110000" "0a010101" "c0000201"
                       "9c40003500180000") + bytes(18)


def write_capture(path: Path, packets: int, flows: int, frame_bytes: int = 60) -> None:
    """``packets`` UDP frames of ``frame_bytes`` bytes, round-robin over ``flows`` source ports."""
    template = np.frombuffer(_FRAME.ljust(frame_bytes, b"\0")[:frame_bytes], dtype=np.uint8)
    step = 1 << 18
    with PcapWriter(path) as w:
        for start in range(0, packets, step):
            n = min(step, packets - start)
            buf = np.tile(template, (n, 1))
            port = 1024 + (np.arange(start, start + n) % flows)
            buf[:, 34], buf[:, 35] = port >> 8, port & 0xFF
            ts = 1_700_000_000 * 10**9 + np.arange(start, start + n, dtype=np.int64) * 1000
            w.write_batch(ts, buf.ravel(), np.arange(n, dtype=np.int64) * frame_bytes,
                          np.full(n, frame_bytes, dtype=np.int64))


def _softnet_drops() -> int:
    """Host-wide packets dropped at the per-CPU input backlog (2nd column of softnet_stat)."""
    rows = Path("/proc/net/softnet_stat").read_text().splitlines()
    return sum(int(row.split()[1], 16) for row in rows if row.strip())


def _consume(cap: LiveCapture, meter: bool, done: threading.Event, out: dict, drain: bool,
             max_blocks: int) -> None:
    from finsa.collectors.meter.flowmeter import FlowMeter

    m = FlowMeter("nfstream") if meter else None
    flows = packets = 0
    first = last = None
    if drain:
        done.wait()
    started = busy_until = time.perf_counter()

    def live():
        for batch in cap.batches(timeout_ms=200, stop_when_idle=drain, max_blocks=max_blocks):
            if not len(batch) and done.is_set():
                break
            yield batch
        yield from cap.drain()  # the block being filled, too

    for batch in live():
        if len(batch):
            packets += len(batch)
            first = first if first is not None else int(batch.ts_ns[0])
            last = int(batch.ts_ns[-1])
            if m is not None:
                ended = m.add(batch)
                flows += len(ended) if ended is not None else 0
            busy_until = time.perf_counter()
    if m is not None:
        ended = m.flush()
        flows += len(ended) if ended is not None else 0
    out.update(packets=packets, flows=flows, span_s=((last or 0) - (first or 0)) / 1e9,
               drain_s=busy_until - started)


def run(packets: int, flows: int, meter: bool, fanout: int, block_size: int, block_count: int,
        drain: bool = False, block_timeout_ms: int = 50, max_blocks: int = 1, senders: int = 1) -> dict:
    ns = f"finsa-bench-{secrets.token_hex(3)}"
    work = Path(tempfile.mkdtemp(prefix="finsa-bench-"))
    pcap = work / "bench.pcap"
    write_capture(pcap, packets, flows)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        sh = ["ip", "netns", "exec", ns]
        subprocess.run(sh + ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                             "net.ipv6.conf.default.disable_ipv6=1"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "add", "va", "type", "veth", "peer", "name", "vb"], check=True)
        for dev in ("va", "vb"):
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        group = secrets.randbelow(0xFFFF) if fanout > 1 else None
        caps = [LiveCapture("vb", fanout_group=group, block_size=block_size, block_count=block_count,
                            block_timeout_ms=block_timeout_ms, netns=ns).start() for _ in range(fanout)]
        done, results = threading.Event(), [dict() for _ in caps]
        threads = [threading.Thread(target=_consume, args=(c, meter, done, r, drain, max_blocks)) for c, r in zip(caps, results)]
        for t in threads:
            t.start()
        softnet = _softnet_drops()
        cmd = sh + [shutil.which("tcpreplay") or "tcpreplay", "--topspeed", "-i", "va", str(pcap)]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(senders)]
        outputs = [p.communicate()[0] for p in procs]
        done.set()
        for t in threads:
            t.join()
        stats = [c.stats() for c in caps]
        for c in caps:
            c.stop()
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(work, ignore_errors=True)
    rated = [re.search(r"Rated: .*?([\d.]+) pps", text) for text in outputs]
    captured = sum(r["packets"] for r in results)
    span = max(r["span_s"] for r in results) or float("nan")
    return {"sent": packets * senders, "captured": captured,
            "tcpreplay_pps": round(sum(float(r.group(1)) for r in rated if r)),
            "captured_pps": round(captured / span), "kernel_drops": sum(s["kernel_drops"] for s in stats),
            "kernel_packets": sum(s["kernel_packets"] for s in stats),
            "softnet_drops": _softnet_drops() - softnet, "flows": sum(r["flows"] for r in results),
            "sockets": fanout, "metered": meter,
            "drain_pps": round(captured / max(r["drain_s"] for r in results)) if drain else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=2_000_000)
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--meter", action="store_true", help="also meter flows in the capture loop")
    parser.add_argument("--fanout", type=int, default=1, help="capture sockets (threads) in one fanout group")
    parser.add_argument("--drain", action="store_true",
                        help="read only after tcpreplay ends: measures how fast the reader empties the ring")
    parser.add_argument("--senders", type=int, default=1, help="tcpreplay processes sending at once")
    parser.add_argument("--max-blocks", type=int, default=1, help="join up to this many waiting blocks")
    parser.add_argument("--block-timeout-ms", type=int, default=50)
    parser.add_argument("--block-size", type=int, default=1 << 22)
    parser.add_argument("--block-count", type=int, default=64)
    a = parser.parse_args()
    print(json.dumps(run(a.packets, a.flows, a.meter, a.fanout, a.block_size, a.block_count, a.drain,
                         a.block_timeout_ms, a.max_blocks, a.senders)))


if __name__ == "__main__":
    main()
