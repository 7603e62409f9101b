"""IPFIX (RFC 7011) messages: header, then the shared set walker.

Header: version 10, message length, export time (s), sequence, observation domain (16 bytes).
The message length bounds the walk; bytes after it are ignored. Templates are kept per
(exporter address, observation domain). Variable-length fields (RFC 7011 section 7) are
understood; RFC 5103 reverse elements fill the ``dst2src_*`` columns.

>>> from finsa.collectors.export.flowsets import TemplatedState
>>> decode_ipfix(b"\\x00\\x0a\\x00\\x10" + bytes(12), "192.0.2.1", TemplatedState())
0
"""

from __future__ import annotations

import struct

from finsa.collectors.export import metrics as m
from finsa.collectors.export.flowsets import TemplatedState

__all__ = ["decode_ipfix", "IPFIX_HEADER_BYTES"]

_HEADER = struct.Struct(">HHIII")
IPFIX_HEADER_BYTES = _HEADER.size


def decode_ipfix(data: bytes, exporter: str, state: TemplatedState) -> int:
    """File the records of one IPFIX message in ``state``; the number of records filed."""
    if len(data) < IPFIX_HEADER_BYTES:
        m.skip("truncated_header")
        return 0
    version, length, export_s, _seq, domain_id = _HEADER.unpack_from(data)
    if version != 10:
        m.skip("bad_version")
        return 0
    if length < IPFIX_HEADER_BYTES or length > len(data):
        m.skip("bad_message_length")
        return 0
    return state.file_message("ipfix", exporter, domain_id, data, IPFIX_HEADER_BYTES, length, (export_s * 1000, -1))
