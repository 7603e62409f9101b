"""Synthetic captures for the benchmarks, written with numpy and cached on disk.

:func:`mixed_capture` writes a classic pcap of many bidirectional flows: TCP sessions to port
443 (handshake, data both ways, FIN exchange), HTTP sessions to port 80 whose first request
carries a ``GET`` with a Host header, DNS queries and answers over UDP, and unanswered SYN scans
answered by RST. :func:`distinct_capture` writes one UDP packet per flow, every 5-tuple
distinct, all within a second: metered without expiry it leaves that many flows in the table.

Files are named by their parameters and reused when present; they live in
``$FINSA_BENCH_CACHE`` (default ``/tmp/finsa-bench-cache``), never in the repository.

>>> import tempfile, os
>>> path = mixed_capture(2_000, seed=1, cache_dir=tempfile.mkdtemp())
>>> os.path.getsize(path) > 2_000 * 60
True
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from finsa.collectors.pcap.writer import PcapWriter

__all__ = ["mixed_capture", "interleaved_capture", "distinct_capture", "cache_dir", "count_packets"]

START_NS = 1_772_442_000_000_000_000  # 2026-03-02T09:00:00Z
_CHUNK_PACKETS = 100_000
_SYN, _RST, _PSH, _ACK, _FIN = 2, 4, 8, 16, 1
_DOMAINS = [f"www.{n}.example".encode() for n in ("bank-a", "pay-b", "ins-c", "sec-d", "cdn", "api", "mail", "login")]


def cache_dir(explicit: str | Path | None = None) -> Path:
    """The benchmark cache folder (created)."""
    path = Path(explicit or os.environ.get("FINSA_BENCH_CACHE", "/tmp/finsa-bench-cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _dns_query(name: bytes, qid: int) -> bytes:
    labels = b"".join(bytes([len(p)]) + p for p in name.split(b".")) + b"\0"
    return qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + b"\x00\x01\x00\x01"


def _http_get(name: bytes) -> bytes:
    return b"GET /login HTTP/1.1\r\nHost: " + name + b"\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"


_PAYLOADS = ([_dns_query(d, 0x1234) for d in _DOMAINS]
             + [_dns_query(d, 0x1234)[:2] + b"\x81\x80" + _dns_query(d, 0x1234)[4:] for d in _DOMAINS]
             + [_http_get(d) for d in _DOMAINS])
_DNS_Q, _DNS_R, _HTTP = 0, len(_DOMAINS), 2 * len(_DOMAINS)


def _flows(n_flows: int, rng: np.random.Generator, data_mean: float = 8, data_max: int = 60) -> dict[str, np.ndarray]:
    kind = rng.choice(4, size=n_flows, p=[0.55, 0.10, 0.30, 0.05])  # 443, http, dns, scan
    data = np.minimum(rng.geometric(1 / data_mean, size=n_flows), data_max)
    n_pkts = np.select([kind <= 1, kind == 2], [data + 6, 2], 2)
    return {
        "kind": kind, "n": n_pkts,
        "client": (10 << 24) + rng.integers(0, 50_000, n_flows),
        "server": np.where(kind == 3, (203 << 24) + rng.integers(0, 1 << 16, n_flows),
                           (192 << 24) + (0 << 16) + (2 << 8) + rng.integers(1, 250, n_flows)),
        "cport": rng.integers(1024, 65535, n_flows),
        "sport": np.select([kind == 0, kind == 1, kind == 2], [443, 80, 53], rng.integers(1, 1024, n_flows)),
        "domain": rng.integers(0, len(_DOMAINS), n_flows),
        "gap_ns": rng.integers(100_000, 20_000_000, n_flows),
    }


def _packets(f: dict[str, np.ndarray], duration_s: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-packet fields, sorted by time."""
    n = f["n"]
    flow = np.repeat(np.arange(len(n)), n)
    pos = np.arange(len(flow)) - np.repeat(np.cumsum(n) - n, n)
    last = f["n"][flow] - 1
    kind = f["kind"][flow]
    tcp = kind != 2
    rev = np.where(kind == 2, pos == 1, (pos == 1) | (pos == last - 1) | ((pos >= 3) & (pos < last - 2) & (pos % 2 == 0)))
    rev |= (kind == 3) & (pos == 1)
    flags = np.full(len(flow), _PSH | _ACK, dtype=np.uint8)
    flags[pos == 0] = _SYN
    flags[(pos == 1) & (kind <= 1)] = _SYN | _ACK
    flags[(pos == 2) | (pos == last)] = _ACK
    flags[(pos >= last - 2) & (pos < last) & (pos >= 3)] = _FIN | _ACK
    flags[(kind == 3) & (pos == 1)] = _RST | _ACK
    flags[~tcp] = 0
    is_data = (kind <= 1) & (pos >= 3) & (pos < last - 2)
    size = np.where(is_data, np.where(rev, rng.integers(100, 1400, len(flow)), rng.integers(20, 300, len(flow))), 0)
    payload = np.full(len(flow), -1)
    payload[(kind == 2) & (pos == 0)] = _DNS_Q + f["domain"][flow][(kind == 2) & (pos == 0)]
    payload[(kind == 2) & (pos == 1)] = _DNS_R + f["domain"][flow][(kind == 2) & (pos == 1)]
    first_get = (kind == 1) & (pos == 3)
    payload[first_get] = _HTTP + f["domain"][flow][first_get]
    has = payload >= 0
    size[has] = np.array([len(p) for p in _PAYLOADS])[payload[has]]
    start = rng.integers(0, int(duration_s * 1e9), len(n))
    ts = START_NS + start[flow] + pos * f["gap_ns"][flow]
    order = np.argsort(ts, kind="stable")
    out = {"ts": ts, "flow": flow, "rev": rev, "flags": flags, "size": size, "payload": payload, "tcp": tcp}
    return {k: v[order] for k, v in out.items()}


def _frames(p: dict[str, np.ndarray], f: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(buffer, offsets, lengths) of Ethernet/IPv4/TCP|UDP frames for packets ``p``."""
    fl, rev, tcp = p["flow"], p["rev"], p["tcp"]
    l4 = np.where(tcp, 20, 8)
    length = 34 + l4 + p["size"]
    offsets = np.zeros(len(fl), dtype=np.int64)
    np.cumsum(length[:-1], out=offsets[1:])
    buf = np.zeros(int(length.sum()), dtype=np.uint8)
    hdr = np.zeros((len(fl), 54), dtype=np.uint8)
    hdr[:, 0:6] = (2, 0, 0, 0, 0, 1)
    hdr[:, 6:12] = (2, 0, 0, 0, 0, 2)
    hdr[:, 12:16] = (8, 0, 0x45, 0)
    hdr[:, 16:18] = (length - 14).astype(">u2").view(np.uint8).reshape(-1, 2)
    hdr[:, 20:24] = (0x40, 0, 64, 0)
    hdr[:, 23] = np.where(tcp, 6, 17)
    client, server = f["client"][fl], f["server"][fl]
    hdr[:, 26:30] = np.where(rev, server, client).astype(">u4").view(np.uint8).reshape(-1, 4)
    hdr[:, 30:34] = np.where(rev, client, server).astype(">u4").view(np.uint8).reshape(-1, 4)
    cport, sport = f["cport"][fl], f["sport"][fl]
    hdr[:, 34:36] = np.where(rev, sport, cport).astype(">u2").view(np.uint8).reshape(-1, 2)
    hdr[:, 36:38] = np.where(rev, cport, sport).astype(">u2").view(np.uint8).reshape(-1, 2)
    udp_len = (8 + p["size"]).astype(">u2").view(np.uint8).reshape(-1, 2)
    hdr[:, 38:40] = np.where(tcp[:, None], 0, udp_len)
    hdr[:, 46] = np.where(tcp, 0x50, 0)
    hdr[:, 47] = p["flags"]
    hdr[:, 48:50] = np.where(tcp[:, None], 0xFF, 0)
    hlen = 34 + l4
    mask = np.arange(54)[None, :] < hlen[:, None]
    rows, cols = np.nonzero(mask)
    buf[offsets[rows] + cols] = hdr[rows, cols]
    for code in np.unique(p["payload"][p["payload"] >= 0]):
        which = np.flatnonzero(p["payload"] == code)
        body = np.frombuffer(_PAYLOADS[code], dtype=np.uint8)
        buf[((offsets[which] + hlen[which])[:, None] + np.arange(len(body))).ravel()] = np.tile(body, len(which))
    return buf, offsets, length


def _write_capture(path: Path, p: dict[str, np.ndarray], f: dict[str, np.ndarray]) -> Path:
    """Write packets ``p`` of flows ``f`` to the capture ``path`` a chunk at a time, through a
    ``.part`` file renamed at the end (an interrupted run leaves no capture in the cache)."""
    tmp = path.with_suffix(".part")
    with PcapWriter(tmp, nanosecond=False) as w:
        for lo in range(0, len(p["ts"]), _CHUNK_PACKETS):
            chunk = {k: v[lo:lo + _CHUNK_PACKETS] for k, v in p.items()}
            buf, offsets, lengths = _frames(chunk, f)
            w.write_batch(chunk["ts"], buf, offsets, lengths)
    tmp.rename(path)
    return path


def mixed_capture(packets: int, seed: int = 7, cache_dir: str | Path | None = None) -> Path:
    """Path of a cached capture of about ``packets`` packets of mixed flows (see module docstring)."""
    path = globals()["cache_dir"](cache_dir) / f"mixed-{packets}-{seed}.pcap"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    f = _flows(max(1, int(packets / 9.4)), rng)
    p = _packets(f, duration_s=max(10.0, packets / 20_000), rng=rng)
    return _write_capture(path, {k: v[:packets] for k, v in p.items()}, f)


def interleaved_capture(flows: int = 50_000, packets: int = 1_000_000, seconds: float = 60.0,
                        cache_dir: str | Path | None = None) -> Path:
    """Path of a cached capture of ``flows`` flows interleaved over ``seconds`` (``packets`` packets).

    The mixed flows above with ~``packets / flows`` packets each (TCP sessions longer), started
    over the first half and spaced 50 ms to ``seconds / 40`` s apart, so tens of thousands of flows
    are open at once; cut to the first ``packets`` packets in time order.
    """
    path = globals()["cache_dir"](cache_dir) / f"interleaved-{flows}-{packets}-{seconds:g}.pcap"
    if path.exists():
        return path
    rng = np.random.default_rng(11)
    per_flow = packets / flows
    f = _flows(flows, rng, data_mean=max((per_flow - 0.7) / 0.65 - 6, 1), data_max=int(8 * per_flow))
    f["gap_ns"] = rng.integers(50_000_000, int(seconds / 40 * 1e9), flows)
    p = _packets(f, duration_s=seconds / 2, rng=rng)
    return _write_capture(path, {k: v[:packets] for k, v in p.items()}, f)


def distinct_capture(flows: int, cache_dir: str | Path | None = None) -> Path:
    """Path of a cached capture of ``flows`` UDP packets, each its own 5-tuple, within one second."""
    path = globals()["cache_dir"](cache_dir) / f"distinct-{flows}.pcap"
    if path.exists():
        return path
    i = np.arange(flows, dtype=np.int64)
    f = {"client": (10 << 24) + i // 60_000, "server": np.full(flows, (192 << 24) + (2 << 8) + 1),
         "cport": 1024 + i % 60_000, "sport": np.full(flows, 9000)}
    tmp = path.with_suffix(".part")
    with PcapWriter(tmp) as w:
        for lo in range(0, flows, _CHUNK_PACKETS):
            idx = i[lo:lo + _CHUNK_PACKETS]
            p = {"flow": idx, "rev": np.zeros(len(idx), bool), "tcp": np.zeros(len(idx), bool),
                 "flags": np.zeros(len(idx), np.uint8), "size": np.full(len(idx), 18),
                 "payload": np.full(len(idx), -1)}
            buf, offsets, lengths = _frames(p, f)
            w.write_batch(START_NS + idx * (1_000_000_000 // max(flows, 1)), buf, offsets, lengths)
    tmp.rename(path)
    return path


def count_packets(path: str | Path, limit: int | None = None) -> int:
    """Packets in a classic pcap written here (walks the record headers)."""
    import struct

    n = 0
    with open(path, "rb") as fh:
        fh.seek(24)
        while limit is None or n < limit:
            head = fh.read(16)
            if len(head) < 16:
                break
            fh.seek(struct.unpack("<IIII", head)[2], 1)
            n += 1
    return n
