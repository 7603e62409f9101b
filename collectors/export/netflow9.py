"""NetFlow v9 (RFC 3954) datagrams: header, then the shared set walker.

Header: version 9, count, sysUptime (ms), unix_secs, sequence, source id (20 bytes). Records'
FIRST/LAST_SWITCHED (IE 22/21) are sysUptime-relative; they become epoch milliseconds through
the header (``unix_secs * 1000 - (sysUptime - switched)``, modulo 2**32 for uptime wrap).
Templates are kept per (exporter address, source id).

>>> from finsa.collectors.export.flowsets import TemplatedState
>>> decode_netflow9(b"\\x00\\x09" + bytes(18), "192.0.2.1", TemplatedState())
0
"""

from __future__ import annotations

import struct

from finsa.collectors.export import metrics as m
from finsa.collectors.export.flowsets import TemplatedState

__all__ = ["decode_netflow9", "V9_HEADER_BYTES"]

_HEADER = struct.Struct(">HHIIII")
V9_HEADER_BYTES = _HEADER.size


def decode_netflow9(data: bytes, exporter: str, state: TemplatedState) -> int:
    """File the records of one v9 datagram in ``state``; the number of records filed."""
    if len(data) < V9_HEADER_BYTES:
        m.skip("truncated_header")
        return 0
    version, _count, uptime_ms, unix_secs, _seq, source_id = _HEADER.unpack_from(data)
    if version != 9:
        m.skip("bad_version")
        return 0
    return state.file_message("netflow9", exporter, source_id, data, V9_HEADER_BYTES, len(data),
                              (unix_secs * 1000, uptime_ms))
