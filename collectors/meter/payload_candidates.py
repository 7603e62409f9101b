"""One cheap pass that finds the packets the payload parsers may want, before they look.

The first-seen hints (:mod:`finsa.collectors.meter.app_hints`) and the per-flow lists
(:mod:`finsa.collectors.meter.payload_marks`) each test every packet with a few dozen
vectorised conditions on ports and the first payload bytes. Nearly every packet of real traffic
(TLS records, bare ACKs, bulk data) fails all of them. :func:`candidate_rows` computes, in one
compiled pass over the packets, a superset of the packets any of those conditions can accept: a port in a
65,536-entry table (DNS, SMB, RDP), the first two payload bytes in another (HTTP methods and
``HTTP``, a TLS handshake, ``SSH-``, ``MZ``/ELF, shell prompts, DCE/RPC), an SSLv2-style hello,
a fourth payload byte of 0 (a length before an ``MZ``), ICMP. The parsers then run unchanged on
those rows only, so what they find is exactly what they would find on the whole batch.

>>> from finsa.collectors.meter.decode import decode_packets
>>> from finsa.collectors.pcap.capture import PacketBatch
>>> ip = bytes.fromhex("4500003c000040004006") + bytes(10)
>>> tcp = lambda dport: bytes.fromhex("9c40") + dport.to_bytes(2, "big") + bytes(8) + b"\\x50\\x18" + bytes(6)
>>> frames = [bytes(12) + b"\\x08\\x00" + ip + tcp(port) + payload
...           for port, payload in ((80, b"GET / HTTP/1.1\\r\\n"), (443, b"\\x17\\x03\\x03\\x00\\x10"), (53, b"xx"))]
>>> batch = PacketBatch.from_packets(list(enumerate(frames)))
>>> rows, packed = candidate_rows(batch.data, decode_packets(batch))
>>> rows.tolist(), hex(int(packed[0]) >> 9)  # the HTTP request and the DNS port; not the TLS record
([0, 2], '0x47455420')
"""

from __future__ import annotations

import numpy as np

from finsa.collectors.compiled import carray, kernel, prefetch, readonly_bytes
from finsa.collectors.meter.app_hints import HTTP_PREFIX_CODES

__all__ = ["candidate_rows"]

#: ports whose packets a parser looks at whatever their payload: DNS, mDNS, LLMNR, SMB, RDP
_PORTS = (53, 5353, 5355, 139, 445, 3389)


def _port_table() -> np.ndarray:
    table = np.zeros(65536, dtype=bool)
    table[list(_PORTS)] = True
    return table


def _lead_table() -> np.ndarray:
    """Every first-two-bytes value (big-endian) with which some payload test can pass."""
    table = np.zeros(65536, dtype=bool)
    table[(HTTP_PREFIX_CODES >> 16).astype(np.int64)] = True  # HTTP methods and responses
    for lead in (b"\x16\x03", b"SS", b"MZ", b"\x7fE", b"Mi", b"\r\n", b"\x05\x00"):
        table[int.from_bytes(lead, "big")] = True  # TLS, SSH, PE, ELF, shell banner/prompt, DCE/RPC
    letters = [*range(0x41, 0x5B), *range(0x61, 0x7B)]
    table[[(c << 8) | 0x3A for c in letters]] = True  # a drive letter and ':' (a "C:\\...>" prompt)
    return table


_PORT_TABLE = _port_table()
_LEAD_TABLE = _lead_table()


@kernel("i64(u8*, i64, i64*, i64*, i64*, u8*, u16*, u16*, u8*, u8*, i64, i64*, i64*)")
def _candidates(buf_p, buf_n, known_p, start_p, avail_p, proto_p, sport_p, dport_p, ports_p, leads_p, n, rows_p,
                packed_p):
    """The rows :func:`wanted` or an MZ after a 4-byte length accepts, and their packed first bytes
    (``known``, or gathered from the buffer where it is -1); returns how many."""
    buf, known, start, avail = carray(buf_p, buf_n), carray(known_p, n), carray(start_p, n), carray(avail_p, n)
    protos, sports, dports = carray(proto_p, n), carray(sport_p, n), carray(dport_p, n)
    ports, leads, rows, packed = carray(ports_p, 65536), carray(leads_p, 65536), carray(rows_p, n), carray(packed_p, n)
    last = buf_n - 1
    k = 0
    for i in range(n):
        if i + 8 < n:
            prefetch(buf, start[i + 8] + 4)  # the bytes an MZ test reads (far behind in memory by now)
        value = known[i]
        if value < 0:
            at = start[i]
            head = 0
            if avail[i] >= 4:
                for j in range(4):
                    q = min(max(at + j, 0), last)
                    head = (head << 8) | np.int64(buf[q])
            sixth = np.int64(buf[min(max(at + 5, 0), last)]) if avail[i] >= 6 else -1
            value = (head << 9) | (sixth + 1)
        head = value >> 9
        proto = protos[i]
        keep = ports[sports[i]] != 0 or ports[dports[i]] != 0 or leads[head >> 16] != 0 \
            or (head & 0x8000FFFF) == 0x80000103 or proto == 1 or proto == 58  # 0x80..0103: an SSLv2-style hello
        if not keep and proto == 6 and avail[i] >= 68 and (head & 0xFF) == 0:
            q = min(start[i] + 4, buf_n - 2)
            keep = buf[q] == 0x4D and buf[q + 1] == 0x5A
        if keep:
            rows[k] = i
            packed[k] = value
            k += 1
    return k


def candidate_rows(data, decoded) -> tuple[np.ndarray, np.ndarray]:
    """(rows of ``decoded`` worth a payload test, their packed first bytes as the decoder packs them).

    The packed value (``head << 9 | sixth + 1``) is known for every row returned, so the parsers
    gather nothing more from the buffer.
    """
    n = len(decoded.protocol)
    known = decoded.payload_head if decoded.payload_head is not None else np.full(n, -1, dtype=np.int64)
    buf = readonly_bytes(data)
    rows, packed = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    kept = _candidates(buf, len(buf), *(np.ascontiguousarray(c, dtype=np.int64) for c in
                                        (known, decoded.payload_offset, decoded.payload_bytes)),
                       np.ascontiguousarray(decoded.protocol, dtype=np.uint8),
                       np.ascontiguousarray(decoded.src_port, dtype=np.uint16),
                       np.ascontiguousarray(decoded.dst_port, dtype=np.uint16),
                       _PORT_TABLE.view(np.uint8), _LEAD_TABLE.view(np.uint8), n, rows, packed)
    return rows[:kept], packed[:kept]
