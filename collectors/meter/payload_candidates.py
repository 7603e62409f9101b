"""One cheap pass that finds the packets the payload parsers may want, before they look.

The first-seen hints (:mod:`finsa.collectors.meter.app_hints`) and the per-flow lists
(:mod:`finsa.collectors.meter.payload_marks`) each test every packet with a few dozen
vectorised conditions on ports and the first payload bytes. Nearly every packet of real traffic
(TLS records, bare ACKs, bulk data) fails all of them. :func:`candidate_rows` computes, in a
handful of passes, a superset of the packets any of those conditions can accept: a port in a
65,536-entry table (DNS, SMB, RDP), the first two payload bytes in another (HTTP methods and
``HTTP``, a TLS handshake, ``SSH-``, ``MZ``/ELF, shell prompts, DCE/RPC), an SSLv2-style hello,
a fourth payload byte of 0 (a length before an ``MZ``), ICMP. The parsers then run unchanged on
those rows only, so what they find is exactly what they would find on the whole batch.

>>> import numpy as np
>>> from finsa.collectors.meter.app_hints import HTTP_PREFIX_CODES
>>> head = np.array([int(HTTP_PREFIX_CODES[0]), 0x17030300, 0x17030300])
>>> wanted(head, np.array([100, 100, 100]), np.array([6, 6, 17]), np.array([40000, 40000, 40000]),
...        np.array([80, 443, 53])).tolist()
[True, False, True]
"""

from __future__ import annotations

import numpy as np

from finsa.collectors.meter.app_hints import HTTP_PREFIX_CODES, _prefixes
from finsa.collectors.meter.payload_marks import _mz_at_four

__all__ = ["candidate_rows", "wanted"]

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


def wanted(head: np.ndarray, avail: np.ndarray, proto: np.ndarray, sport: np.ndarray,
           dport: np.ndarray) -> np.ndarray:
    """True for every packet some payload test may accept (a superset: never misses one).

    ``head``: the first four payload bytes as a big-endian int (0 when fewer than four).
    """
    out = _PORT_TABLE[sport] | _PORT_TABLE[dport]
    out |= _LEAD_TABLE[head >> 16]
    out |= (head & 0x8000FFFF) == 0x80000103  # an SSLv2-style ClientHello (first byte >= 0x80)
    out |= (proto == 1) | (proto == 58)
    return out


def candidate_rows(data, decoded) -> tuple[np.ndarray, np.ndarray]:
    """(rows of ``decoded`` worth a payload test, their packed first bytes as the decoder packs them).

    The packed value (``head << 9 | sixth + 1``) is known for every row returned, so the parsers
    gather nothing more from the buffer.
    """
    start, avail = decoded.payload_offset, decoded.payload_bytes
    head, sixth = _prefixes(data, start, avail, decoded.payload_head)
    proto = decoded.protocol
    keep = wanted(head, avail, proto, decoded.src_port, decoded.dst_port)
    keep |= _mz_at_four(data, start, avail, proto == 6, head)  # an MZ after a 4-byte length
    rows = np.flatnonzero(keep)
    return rows, (head[rows] << 9) | (sixth[rows] + 1)
