"""Application hints from the first payload bytes, without full dissection.

A vectorised prefilter picks the few packets whose payload can be a DNS message (UDP/TCP port
53, mDNS 5353, LLMNR 5355), a TLS ClientHello, an HTTP request or response line, or an SSH
banner; only those are parsed in Python. :func:`packet_hints` returns, per candidate, the values
for the flow record's string/number hint columns; the meter keeps the first seen per flow.

>>> parse_http(b"GET /wiki HTTP/1.1\\r\\nHost: en.wikipedia.org\\r\\n\\r\\n")
{'http_method': 'GET', 'http_uri': '/wiki', 'http_host': 'en.wikipedia.org'}
>>> parse_dns(bytes.fromhex("1234 0100 0001 0000 0000 0000 03777777 076578616d706c65 03636f6d 00 0001 0001"))
{'dns_query': 'www.example.com', 'dns_qtype': 1}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from finsa.collectors.meter.flowtable import HINT_COLUMNS, object_column
from finsa.collectors.meter.isin import isin
from finsa.collectors.meter.same_payloads import distinct_payloads
from finsa.collectors.meter.tls_hello import parse_client_hello

__all__ = ["packet_hints", "parse_dns", "parse_http", "parse_ssh", "dns_cached", "head_bytes", "HTTP_PREFIX_CODES"]

_MAX_TEXT = 255
_DNS_PORTS = (53, 5353, 5355)
_HTTP_PREFIXES = [b"GET ", b"POST", b"HEAD", b"PUT ", b"DELE", b"OPTI", b"PATC", b"CONN", b"HTTP"]
_PREFIX_CODES = np.array([int.from_bytes(p, "big") for p in _HTTP_PREFIXES], dtype=np.int64)
HTTP_PREFIX_CODES = _PREFIX_CODES
_SSH = int.from_bytes(b"SSH-", "big")


def _text(raw: bytes) -> str:
    return raw[:_MAX_TEXT].decode("utf-8", "replace")


def parse_dns(msg: bytes) -> dict | None:
    """Query name and type (and rcode of a response) of a DNS message."""
    if len(msg) < 17:
        return None
    flags, qdcount = int.from_bytes(msg[2:4], "big"), int.from_bytes(msg[4:6], "big")
    out: dict = {}
    if flags & 0x8000:
        out["dns_rcode"] = flags & 0x0F
    if qdcount:
        labels: list[bytes] = []
        pos = 12
        while pos < len(msg) and msg[pos] != 0 and len(labels) < 64:
            length = msg[pos]
            if length & 0xC0 or pos + 1 + length > len(msg):
                return out or None
            labels.append(msg[pos + 1:pos + 1 + length])
            pos += 1 + length
        if pos + 3 > len(msg):
            return out or None
        out["dns_query"] = _text(b".".join(labels))
        out["dns_qtype"] = int.from_bytes(msg[pos + 1:pos + 3], "big")
    return out or None


_DNS_CACHE: dict[bytes, dict | None] = {}
_DNS_CACHE_ENTRIES = 65536


def _dns_cached(msg: bytes) -> dict | None:
    """parse_dns, remembered by the message without its ID (names repeat a lot; callers never mutate)."""
    key = msg[2:]
    try:
        return _DNS_CACHE[key]
    except KeyError:
        if len(_DNS_CACHE) >= _DNS_CACHE_ENTRIES:
            _DNS_CACHE.clear()
        out = _DNS_CACHE[key] = parse_dns(msg)
        return out


dns_cached = _dns_cached


def parse_http(payload: bytes) -> dict | None:
    """Method, URI and Host of a request, or the status of a response."""
    line, _, rest = payload.partition(b"\r\n")
    parts = line.split(b" ")
    if payload.startswith(b"HTTP/"):
        if len(parts) >= 2 and parts[1][:3].isdigit():
            return {"http_status": int(parts[1][:3])}
        return None
    if len(parts) < 3 or not parts[2].startswith(b"HTTP/"):
        return None
    out = {"http_method": _text(parts[0]), "http_uri": _text(parts[1])}
    lower = rest[:4096].lower()
    at = lower.find(b"host:") if lower.startswith(b"host:") else lower.find(b"\r\nhost:")
    if at >= 0:
        start = at + (5 if lower.startswith(b"host:") and at == 0 else 7)
        end = rest.find(b"\r\n", start)
        out["http_host"] = _text(rest[start:end if end >= 0 else None].strip())
    return out


def parse_ssh(payload: bytes) -> dict | None:
    line = payload.split(b"\n", 1)[0].rstrip(b"\r")
    return {"ssh_banner": _text(line)} if line.startswith(b"SSH-") else None


def _prefixes(data, start: np.ndarray, avail: np.ndarray,
              known: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """First four payload bytes as a big-endian int (0 when shorter) and the sixth byte (-1 when absent).

    ``known`` holds them packed by the decoder (``head << 9 | sixth + 1``, -1 where not known);
    only the unknown ones are gathered from the buffer.
    """
    if known is None:
        head = np.zeros(len(start), dtype=np.int64)
        sixth = np.full(len(start), -1, dtype=np.int64)
        todo = np.arange(len(start))
    else:  # unpacked everywhere; the rows not known (-1) are overwritten below
        head, sixth = known >> 9, (known & 0x1FF) - 1
        todo = np.flatnonzero(known < 0)
    if len(todo):
        buf = np.frombuffer(data, dtype=np.uint8) if len(data) else np.zeros(1, dtype=np.uint8)
        idx = np.clip(start[todo, None] + np.arange(6), 0, len(buf) - 1)
        b = buf[idx].astype(np.int64)
        got = (b[:, 0] << 24) | (b[:, 1] << 16) | (b[:, 2] << 8) | b[:, 3]
        head[todo] = np.where(avail[todo] >= 4, got, 0)
        sixth[todo] = np.where(avail[todo] >= 6, b[:, 5], -1)
    return head, sixth


def head_bytes(data, start: np.ndarray, avail: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """First four payload bytes of each packet as a big-endian int (0 when shorter)."""
    return _prefixes(data, start, avail, known)[0]


_BIT = {name: i for i, name in enumerate(HINT_COLUMNS)}
#: per hint kind (1 DNS, 2 TLS, 3 HTTP, 4 SSH): the columns its parser can fill
KIND_COLUMNS = {1: ("dns_query", "dns_qtype", "dns_rcode"), 2: ("tls_sni", "tls_version", "tls_ja4"),
                3: ("http_method", "http_uri", "http_host", "http_status"), 4: ("ssh_banner",)}
_PARSERS = {1: _dns_cached, 2: parse_client_hello, 3: parse_http, 4: parse_ssh}
#: kinds whose payloads repeat byte for byte (from this offset on: a DNS message's ID differs),
#: parsed once per distinct payload; a ClientHello carries random bytes and never repeats
_REPEATING = {1: 2, 3: 0, 4: 0}


def _parse_kind(data, k: int, start: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One kind's parser over its candidates: (candidates that gave a hint, their value columns).

    DNS messages (the ID aside), HTTP requests and SSH banners that repeat byte for byte are parsed
    once (:func:`distinct_payloads`);
    the values of each distinct result are spread to its rows with numpy.
    """
    parse = _PARSERS[k]
    if k in _REPEATING:
        firsts, groups = distinct_payloads(data, start, ends, skip=_REPEATING[k])
    else:
        firsts, groups = np.arange(len(start)), None
    found = list(map(parse, [data[s:e] for s, e in zip(start[firsts].tolist(), ends[firsts].tolist())]))
    ok = np.array([bool(f) for f in found], dtype=bool)
    names = KIND_COLUMNS[k]
    cols = {name: np.empty(len(found), dtype=object) for name in names}
    for name in names:
        cols[name][:] = [f.get(name) if f else None for f in found]
    hit = np.flatnonzero(ok if groups is None else ok[groups])
    if groups is not None:
        cols = {name: col[groups[hit]] for name, col in cols.items()}
    else:
        cols = {name: col[hit] for name, col in cols.items()}
    return hit, cols


def _parse(data, rows: np.ndarray, kind: np.ndarray, start: np.ndarray, avail: np.ndarray,
           proto: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Parse the candidates kind by kind: (rows that gave a hint, value columns and present bits aligned with them).

    One ``map`` of one parser per kind, and per kind only its own columns are filled: no
    Python branch per packet, no lookup of every hint column in every result.
    """
    dns_tcp = (kind == 1) & (proto == 6)  # DNS over TCP: a two-byte length comes first
    start, avail = start + 2 * dns_tcp, avail - 2 * dns_tcp
    got_rows, parts = [], []
    for k in np.flatnonzero(np.bincount(kind, minlength=len(KIND_COLUMNS) + 1)).tolist():  # kinds 1..4 present
        at = np.flatnonzero(kind == k)
        hit, cols = _parse_kind(data, k, start[at], start[at] + avail[at])
        if len(hit):
            got_rows.append(rows[at[hit]])
            parts.append((k, len(hit), cols))
    n = sum(m for _, m, _ in parts)
    values: dict[str, np.ndarray] = {}
    present = np.zeros(n, dtype=np.int64)
    pos = 0
    for k, m, cols in parts:
        end = pos + m
        for name in KIND_COLUMNS[k]:
            col = values.get(name)
            if col is None:
                col = values[name] = object_column(n)
            col[pos:end] = cols[name]
            present[pos:end] |= np.not_equal(col[pos:end], None).astype(np.int64) << _BIT[name]  # type: ignore[call-overload]  # numpy's stubs refuse None in object arrays
        pos = end
    return (np.concatenate(got_rows) if got_rows else np.zeros(0, dtype=np.int64)), values, present


@dataclass
class Hints:
    """Hints found in a batch: ``rows`` (packets of the Decoded) with ``values`` per hint column and
    ``present`` (per row, bit i set where ``HINT_COLUMNS[i]`` has a value), and
    ``tried_rows``/``tried_bits``: every candidate parsed, with its (kind, direction) bit."""

    rows: np.ndarray
    values: dict[str, np.ndarray]
    present: np.ndarray
    tried_rows: np.ndarray
    tried_bits: np.ndarray


def tried_bit(kind: np.ndarray, dir_lo: np.ndarray) -> np.ndarray:
    """Bit of a (kind 1..4, direction) pair in a flow's ``hint_tried`` mask."""
    return np.left_shift(1, (kind.astype(np.int64) - 1) * 2 + dir_lo.astype(np.int64))


def packet_hints(packets, decoded, side_key: np.ndarray | None = None,
                 dir_lo: np.ndarray | None = None, tried: np.ndarray | None = None) -> Hints | None:
    """Hints of the candidate packets of ``decoded``, parsed at most once per flow and direction.

    ``side_key`` (one value per flow key and direction) limits parsing to the first candidate
    of each kind per key and direction in the batch: later ones could not change "first seen".
    ``tried`` (per packet, its flow's ``hint_tried`` mask) skips (kind, direction) pairs that an
    earlier batch parsed already.
    """
    start, avail = decoded.payload_offset, decoded.payload_bytes
    proto = decoded.protocol
    sport, dport = decoded.src_port, decoded.dst_port
    known = None if decoded.payload_head is None else decoded.payload_head
    head, sixth = _prefixes(packets.data, start, avail, known)
    dns = (avail >= 12) & isin(proto, (6, 17)) & (isin(sport, _DNS_PORTS) | isin(dport, _DNS_PORTS))
    tls = (proto == 6) & (((head >> 16) == 0x1603) & (sixth == 1)
                         | (((head >> 24) & 0x80) != 0) & (((head >> 8) & 0xFF) == 1) & ((head & 0xFF) == 3))
    http = (proto == 6) & isin(head, _PREFIX_CODES)
    ssh = (proto == 6) & (head == _SSH) & (sport != 22)
    kind = np.select([dns, tls, http, ssh], [1, 2, 3, 4], 0)
    if tried is not None and dir_lo is not None:
        kind[(kind > 0) & ((tried & tried_bit(np.maximum(kind, 1), dir_lo)) != 0)] = 0
    rows = np.flatnonzero(kind)
    if not len(rows):
        return None
    if side_key is not None:
        with np.errstate(over="ignore"):
            dedupe = side_key[rows] * np.uint64(5) + kind[rows].astype(np.uint64)
        rows = np.sort(rows[np.unique(dedupe, return_index=True)[1]])
    got, values, present = _parse(packets.data, rows, kind[rows], start[rows], avail[rows], proto[rows])
    bits = tried_bit(kind[rows], dir_lo[rows]) if dir_lo is not None else np.zeros(len(rows), dtype=np.int64)
    return Hints(got, values, present, rows, bits)
