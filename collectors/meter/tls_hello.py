"""TLS ClientHello parsing for flow hints: SNI, offered version and the JA4 fingerprint.

Only the first TLS record of a TCP payload is read (a ClientHello split over several segments
gives what fits). JA4 follows FoxIO's specification for TCP: ``t``, version, ``d``/``i`` (SNI
present or not), cipher and extension counts, first and last character of the first ALPN value,
then truncated SHA-256 of the sorted ciphers and of the sorted extensions plus signature algorithms;
GREASE values are ignored.

>>> parse_client_hello(b"not tls") is None
True
"""

from __future__ import annotations

import hashlib
import struct

__all__ = ["parse_client_hello", "ja4"]

_VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3"}


def _grease(value: int) -> bool:
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


def _u16s(raw: bytes) -> list[int]:
    return [v for (v,) in struct.iter_unpack(">H", raw[:len(raw) // 2 * 2])]


def _extensions(body: bytes, pos: int) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    if pos + 2 > len(body):
        return out
    end = min(len(body), pos + 2 + int.from_bytes(body[pos:pos + 2], "big"))
    pos += 2
    while pos + 4 <= end:
        etype, elen = struct.unpack_from(">HH", body, pos)
        out.append((etype, body[pos + 4:pos + 4 + elen]))
        pos += 4 + elen
    return out


def parse_client_hello(payload: bytes) -> dict | None:
    """SNI, offered version and JA4 of a ClientHello at the start of ``payload``, else None.

    An SSLv2-format ClientHello (old clients) gives only the version: it has no extensions.
    """
    if len(payload) >= 5 and payload[0] & 0x80 and payload[2] == 1 and payload[3] == 3:
        return {"tls_version": int.from_bytes(payload[3:5], "big")}
    if len(payload) < 9 or payload[0] != 0x16 or payload[5] != 0x01:
        return None
    body = payload[9:]
    if len(body) < 35:
        return None
    client_version = int.from_bytes(body[0:2], "big")
    pos = 34
    pos += 1 + body[pos]
    if pos + 2 > len(body):
        return None
    n_cipher_bytes = int.from_bytes(body[pos:pos + 2], "big")
    ciphers = [c for c in _u16s(body[pos + 2:pos + 2 + n_cipher_bytes]) if not _grease(c)]
    pos += 2 + n_cipher_bytes
    if pos >= len(body):
        return None
    pos += 1 + body[pos]
    exts = [(t, d) for t, d in _extensions(body, pos) if not _grease(t)]
    out: dict = {}
    versions = [client_version]
    alpn = ""
    sig_algs: list[int] = []
    for etype, data in exts:
        if etype == 0 and len(data) > 5:
            name_len = int.from_bytes(data[3:5], "big")
            out["tls_sni"] = data[5:5 + name_len].decode("ascii", "replace")[:255]
        elif etype == 43 and data:
            offered = [v for v in _u16s(data[1:1 + data[0]]) if not _grease(v)]
            versions = offered or versions
        elif etype == 16 and len(data) > 3:
            alpn = data[3:3 + data[2]].decode("ascii", "replace")
        elif etype == 13 and len(data) > 2:
            sig_algs = _u16s(data[2:2 + int.from_bytes(data[0:2], "big")])
    out["tls_version"] = max(versions)
    out["tls_ja4"] = ja4(max(versions), "tls_sni" in out, ciphers, [t for t, _ in exts], alpn, sig_algs)
    return out


def _hash12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12] if text else "000000000000"


def ja4(version: int, has_sni: bool, ciphers: list[int], extensions: list[int], alpn: str,
        sig_algs: list[int], transport: str = "t") -> str:
    """The JA4 fingerprint from a ClientHello's fields (GREASE already removed)."""
    alpn_part = (alpn[0] + alpn[-1]) if alpn else "00"
    if alpn and not (alpn[0].isalnum() and alpn[-1].isalnum()):
        alpn_part = alpn.encode()[:1].hex()[0] + alpn.encode()[-1:].hex()[-1]
    head = (f"{transport}{_VERSIONS.get(version, '00')}{'d' if has_sni else 'i'}"
            f"{min(len(ciphers), 99):02d}{min(len(extensions), 99):02d}{alpn_part}")
    cipher_text = ",".join(f"{c:04x}" for c in sorted(ciphers))
    ext_text = ",".join(f"{e:04x}" for e in sorted(e for e in extensions if e not in (0, 16)))
    if sig_algs and ext_text:
        ext_text += "_" + ",".join(f"{s:04x}" for s in sig_algs)
    return f"{head}_{_hash12(cipher_text)}_{_hash12(ext_text)}"
