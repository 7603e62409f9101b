"""Application payloads of the scenario, built once each and referred to by a small integer.

A :class:`PayloadTable` stores unique payloads (deduplicated) and, once generation is done,
their lengths and 16-bit one's-complement word sums, so the packet encoder adds a payload's
share of the TCP/UDP checksum without touching its bytes again. Builders make plausible
application bytes: a TLS 1.3 ClientHello carrying an SNI, a TLS ServerHello flight, DNS
queries and answers, HTTP requests and responses, SSH banners and key-exchange packets, and
"encrypted" filler of any length (deterministic pseudo-random bytes).

>>> table = PayloadTable()
>>> table.add(b"abc") == table.add(b"abc"), table.add(b"") == 0
(True, True)
>>> lengths, sums = table.arrays()
>>> int(lengths[table.add(b"abc")]), int(sums[table.add(b"abc")]) == 0x6162 + 0x6300
(3, True)
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

__all__ = ["PayloadTable", "tls_client_hello", "tls_server_flight", "dns_query", "dns_answer",
           "dns_txt_answer", "dns_nxdomain", "http_request", "http_response", "ssh_banner", "ssh_kexinit",
           "QTYPE_A", "QTYPE_TXT"]

QTYPE_A, QTYPE_TXT = 1, 16

_FILLER = np.random.default_rng(0x5CE7A210).bytes(1 << 16)


class PayloadTable:
    """Unique payload byte strings; id 0 is the empty payload."""

    def __init__(self) -> None:
        self._blobs: list[bytes] = [b""]
        self._lengths: list[int] = [0]
        self._index: dict[bytes, int] = {b"": 0}

    def __len__(self) -> int:
        return len(self._blobs)

    def add(self, data: bytes) -> int:
        """Id of ``data``, adding it when new."""
        found = self._index.get(data)
        if found is None:
            found = self._index[data] = len(self._blobs)
            self._blobs.append(data)
            self._lengths.append(len(data))
        return found

    def filler(self, length: int, prefix: bytes = b"") -> int:
        """Id of ``length`` pseudo-random bytes (after ``prefix``), like encrypted data."""
        body = max(0, int(length) - len(prefix))
        start = (body * 7919) % (len(_FILLER) - body) if body < len(_FILLER) else 0
        return self.add(prefix + _FILLER[start:start + body])

    def fillers(self, lengths: np.ndarray, prefix: bytes = b"") -> np.ndarray:
        """Ids of filler payloads, one per length."""
        return np.array([self.filler(int(n), prefix) for n in lengths], dtype=np.int32)

    def lengths(self) -> np.ndarray:
        """Payload lengths indexed by id (cheap: no bytes are touched)."""
        return np.array(self._lengths, dtype=np.int64)

    def blob(self, payload_id: int) -> bytes:
        return self._blobs[payload_id]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(lengths, word_sums) indexed by payload id; odd payloads are padded with a zero byte."""
        lengths = self.lengths()
        padded = b"".join(b + b"\x00" if len(b) % 2 else b for b in self._blobs)
        words = np.frombuffer(padded, dtype=">u2").astype(np.uint64)
        starts = np.zeros(len(lengths), dtype=np.int64)
        np.cumsum((lengths[:-1] + 1) // 2, out=starts[1:])
        sums = np.zeros(len(lengths), dtype=np.uint64)
        nonempty = lengths > 0
        if nonempty.any():
            sums[nonempty] = np.add.reduceat(words, starts[nonempty]) if len(words) else 0
        return lengths, sums


def _seeded(label: str, n: int) -> bytes:
    """Deterministic pseudo-random bytes named by ``label`` (reproducible across runs)."""
    out, counter = b"", 0
    while len(out) < n:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return out[:n]


def _ext(kind: int, body: bytes) -> bytes:
    return struct.pack("!HH", kind, len(body)) + body


def tls_client_hello(server_name: str, nonce: str = "") -> bytes:
    """A TLS 1.3 ClientHello record with SNI ``server_name``, ALPN and an x25519 key share."""
    name = server_name.encode()
    suites = struct.pack("!9H", 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8)
    alpn = b"".join(bytes([len(p)]) + p for p in (b"h2", b"http/1.1"))
    extensions = b"".join([
        _ext(0, struct.pack("!HBH", len(name) + 3, 0, len(name)) + name),
        _ext(10, struct.pack("!H3H", 6, 0x001D, 0x0017, 0x0018)),
        _ext(11, b"\x01\x00"),
        _ext(13, struct.pack("!H4H", 8, 0x0403, 0x0804, 0x0401, 0x0503)),
        _ext(16, struct.pack("!H", len(alpn)) + alpn),
        _ext(43, b"\x04\x03\x04\x03\x03"),
        _ext(51, struct.pack("!HHH", 36, 0x001D, 32) + _seeded(f"ks/{name!r}/{nonce!r}", 32)),
    ])
    body = (b"\x03\x03" + _seeded(f"cr/{name!r}/{nonce!r}", 32) + b"\x20" + _seeded(f"sid/{nonce!r}", 32)
            + struct.pack("!H", len(suites)) + suites + b"\x01\x00"
            + struct.pack("!H", len(extensions)) + extensions)
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def tls_server_flight(segment_bytes: int, nonce: str = "") -> bytes:
    """The first server segment of a TLS 1.3 handshake: ServerHello, CCS, encrypted records."""
    body = (b"\x03\x03" + _seeded(f"sr/{nonce}", 32) + b"\x20" + _seeded(f"sid/{nonce}", 32)
            + b"\x13\x01\x00" + struct.pack("!H", 46)
            + _ext(43, b"\x03\x04") + _ext(51, struct.pack("!HH", 0x001D, 32) + _seeded(f"sk/{nonce}", 32)))
    hello = b"\x02" + len(body).to_bytes(3, "big") + body
    records = b"\x16\x03\x03" + struct.pack("!H", len(hello)) + hello + b"\x14\x03\x03\x00\x01\x01"
    rest = max(5, segment_bytes - len(records)) - 5
    return records + b"\x17\x03\x03" + struct.pack("!H", 4000) + _seeded(f"ad/{nonce}", rest)


def _qname(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\x00"


def dns_query(txid: int, name: str, qtype: int = 1) -> bytes:
    """A recursive DNS query for ``name``."""
    return struct.pack("!6H", txid, 0x0100, 1, 0, 0, 0) + _qname(name) + struct.pack("!HH", qtype, 1)


def dns_answer(txid: int, name: str, address: bytes, ttl_s: int = 300) -> bytes:
    """The answer to :func:`dns_query`: one A record (``address`` is 4 bytes)."""
    head = struct.pack("!6H", txid, 0x8180, 1, 1, 0, 0) + _qname(name) + struct.pack("!HH", 1, 1)
    return head + struct.pack("!HHHIH", 0xC00C, 1, 1, ttl_s, 4) + address


def dns_txt_answer(txid: int, name: str, text: bytes, ttl_s: int = 0) -> bytes:
    """The answer to a TXT :func:`dns_query`: one TXT record holding ``text`` (split in 255-byte strings)."""
    head = struct.pack("!6H", txid, 0x8180, 1, 1, 0, 0) + _qname(name) + struct.pack("!HH", QTYPE_TXT, 1)
    rdata = b"".join(bytes([len(text[i:i + 255])]) + text[i:i + 255] for i in range(0, max(len(text), 1), 255))
    return head + struct.pack("!HHHIH", 0xC00C, QTYPE_TXT, 1, ttl_s, len(rdata)) + rdata


def dns_nxdomain(txid: int, name: str, qtype: int = QTYPE_A) -> bytes:
    """A "no such name" answer (rcode 3) to :func:`dns_query`, without an authority section."""
    return struct.pack("!6H", txid, 0x8183, 1, 0, 0, 0) + _qname(name) + struct.pack("!HH", qtype, 1)


def http_request(host: str, path: str = "/", agent: str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64)") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {agent}\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n").encode()


def http_response(status: str, location: str = "", body_bytes: int = 0) -> bytes:
    head = f"HTTP/1.1 {status}\r\nServer: nginx\r\nContent-Length: {body_bytes}\r\n"
    if location:
        head += f"Location: {location}\r\n"
    return (head + "Connection: close\r\n\r\n").encode() + b"<" * body_bytes


def ssh_banner(software: str) -> bytes:
    return f"SSH-2.0-{software}\r\n".encode()


def ssh_kexinit(label: str, total_bytes: int) -> bytes:
    """An SSH binary packet holding a KEXINIT (message 20) of about ``total_bytes``."""
    names = b"curve25519-sha256,ecdh-sha2-nistp256,diffie-hellman-group14-sha256"
    body = b"\x14" + _seeded(f"kex/{label}", 16) + struct.pack("!I", len(names)) + names
    body += b"\x00" * max(0, total_bytes - 5 - len(body))
    padding = 4 + (-(len(body) + 9) % 8)
    return struct.pack("!IB", len(body) + padding + 1, padding) + body + b"\x00" * padding
