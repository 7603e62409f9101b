"""Candidate packets for the per-flow lists, and what each one says.

:func:`packet_items` selects, with numpy tests on ports and the first payload bytes, the packets
that can carry a fact worth keeping, and parses only those:

========  ==========================================================================  ==============
kind      candidates                                                                  items
========  ==========================================================================  ==============
dns       UDP/TCP port 53, 5353, 5355                                                 ``name/qtype``
http      TCP payload starting with a method or ``HTTP/``                             request/response
smb       TCP 139/445 with an SMB1/SMB2 header (read as a numpy (n, 72) byte gather)  markers
rdp       TCP 3389 with a TPKT header                                                 markers
exe       payload starting with ``MZ`` (or after a 4-byte length) or ``\\x7fELF``      ``exe``
shell     TCP payload starting ``Microsoft Windows`` or a ``C:\\...>`` prompt          ``shell``
icmp      ICMP/ICMPv6 echo whose data is neither the Windows nor the Unix pattern     ``icmp_*``
========  ==========================================================================  ==============

SMB markers: ``smb1``/``smb2`` (a NEGOTIATE was seen), ``smb1_trans2_session_setup`` (Trans2
subcommand SESSION_SETUP: the DoublePulsar ping/exec), ``smb1_dp_reply`` (a Trans2 answer
STATUS_NOT_IMPLEMENTED with multiplex id 81/82: an implant's reply), ``smb1_nt_trans_large``
(an NT Trans request announcing at least 64 KiB of data: the MS17-010 overflow),
``smb1_trans2_secondary``, ``smb_svcctl`` (the service-control pipe or its DCE/RPC interface),
``smb_admin_share`` (a tree connect to ADMIN$ or C$). RDP markers: ``rdp_ms_t120`` (a client
asking for the MS_T120 channel: BlueKeep), ``rdp_bad_tpkt`` (TPKT/X.224 lengths that disagree).

>>> _icmp_kind(b"BlueChat hello, transfer all of the funds to account 1234")
'icmp_text'
>>> _icmp_kind(b"abcdefghijklmnopqrstuvwabcdefghi") is None
True
>>> _http_response(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/x-msdownload\\r\\n\\r\\nMZ")
[('resp', '200\\tapplication/x-msdownload'), ('mark', 'exe')]
"""

from __future__ import annotations

import math
import re

import numpy as np

from finsa.collectors.meter.app_hints import HTTP_PREFIX_CODES, dns_cached, head_bytes
from finsa.collectors.meter.isin import isin
from finsa.collectors.meter.same_payloads import distinct_payloads

__all__ = ["packet_items"]

_DNS_PORTS = (53, 5353, 5355)
_SMB_PORTS = (139, 445)
_GATHER = 72
_SVCCTL = (b"s\x00v\x00c\x00c\x00t\x00l\x00", b"svcctl", bytes.fromhex("81bb7a364498f135ad3298f038001003"))
_ADMIN = (b"\\\x00A\x00D\x00M\x00I\x00N\x00$\x00", b"\\\x00C\x00$\x00", b"\\ADMIN$", b"\\C$")
_EXE_TYPES = ("application/x-msdownload", "application/x-dosexec", "application/x-executable",
              "application/vnd.microsoft.portable-executable", "application/x-msdos-program",
              "application/x-elf", "application/x-sharedlib")
_SHELL = re.compile(rb"^(?:\r?\n)*(?:Microsoft Windows(?: XP| 2000| NT)? \[Version"
                    rb"|[A-Za-z]:\\[^\r\n<>|\x00]{0,200}>[ \r\n]*$)")
_WINDOWS_PING = b"abcdefghijklmnopqrstuvwabcdefghi"
_CLEAN = re.compile(r"[\x00-\x1f\x7f]")


def _clean(text: str, limit: int = 255) -> str:
    """Text safe inside a list field: control characters (separators among them) become '?'.

    Printable text (the usual case) is returned as it is without running the substitution.

    >>> _clean("a\\tb"), _clean("host.example")
    ('a?b', 'host.example')
    """
    text = text[:limit]
    return text if text.isprintable() else _CLEAN.sub("?", text)


def _dns(msg: bytes) -> list[tuple[str, str]]:
    got = dns_cached(msg)
    if not got or "dns_query" not in got:
        return []
    return [("dns", f"{_clean(got['dns_query'])}/{got['dns_qtype']}")]


def _header(block: bytes, name: bytes) -> str:
    at = block.find(b"\r\n" + name)
    if at < 0:
        return ""
    end = block.find(b"\r\n", at + 2)
    return block[at + 2 + len(name):end if end >= 0 else None].strip().decode("latin-1")


def _http_request(payload: bytes) -> list[tuple[str, str]]:
    line, _, rest = payload.partition(b"\r\n")
    parts = line.split(b" ")
    if len(parts) < 3 or not parts[-1].startswith(b"HTTP/"):
        return []
    at = rest.find(b"\r\n\r\n", 0, 4096)
    host = _header(b"\r\n" + rest[:at if at >= 0 else 4096].lower(), b"host:")
    text = "\t".join((_clean(parts[0].decode("latin-1"), 16), _clean(host), _clean(parts[1].decode("latin-1"), 2048)))
    return [("req", text)]


def _http_response(payload: bytes) -> list[tuple[str, str]]:
    head, _, body = payload[:8192].partition(b"\r\n\r\n")
    line = head.split(b"\r\n", 1)[0].split(b" ")
    if len(line) < 2 or not line[1][:3].isdigit():
        return []
    ctype = _header(head.lower(), b"content-type:").split(";")[0].strip()
    out = [("resp", f"{int(line[1][:3])}\t{_clean(ctype, 100)}")]
    if ctype in _EXE_TYPES or _is_exe(body):
        out.append(("mark", "exe"))
    elif ctype in ("application/x-shockwave-flash", "application/java-archive") or body[:3] in (b"CWS", b"FWS", b"ZWS"):
        out.append(("mark", "flash_or_java"))
    return out


def _is_exe(data: bytes) -> bool:
    """A PE (MZ header whose e_lfanew points at PE\\0\\0, or the DOS stub text) or an ELF header."""
    if data[:4] == b"\x7fELF":
        return len(data) >= 6 and data[4] in (1, 2) and data[5] in (1, 2)
    if data[:2] != b"MZ" or len(data) < 64:
        return False
    lfanew = int.from_bytes(data[0x3C:0x40], "little")
    if lfanew + 4 <= len(data) and data[lfanew:lfanew + 4] == b"PE\x00\x00":
        return True
    return b"This program" in data[64:200]


def _exe(payload: bytes) -> list[tuple[str, str]]:
    return [("mark", "exe")] if _is_exe(payload) or _is_exe(payload[4:]) else []


def _shell(payload: bytes) -> list[tuple[str, str]]:
    return [("mark", "shell")] if _SHELL.match(payload[:512]) else []


def _icmp_kind(data: bytes) -> str | None:
    """icmp_text (mostly printable, not a ping pattern), icmp_payload (other non-standard data)."""
    if len(data) < 16 or data.startswith(_WINDOWS_PING[:16]) or len(set(data)) == 1:
        return None
    tail = data[-8:]
    if all((tail[i + 1] - tail[i]) % 256 == 1 for i in range(len(tail) - 1)):
        return None  # Unix ping: timestamp then an incrementing byte pattern
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in data) / len(data)
    letters = sum(65 <= (b | 32) - 32 <= 90 for b in data) / len(data)
    if printable >= 0.8 and letters >= 0.3:
        return "icmp_text"
    if len(data) >= 32:
        counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
        p = counts[counts > 0] / len(data)
        entropy = float(-(p * np.log2(p)).sum())
        if entropy >= min(6.0, 0.8 * math.log2(len(data))):
            return "icmp_payload"
    return None


def _icmp(payload: bytes) -> list[tuple[str, str]]:
    kind = _icmp_kind(payload[4:])  # after the echo identifier and sequence number
    return [("mark", kind)] if kind else []


def _smb_python(payload: bytes) -> list[tuple[str, str]]:
    """Markers that need a search of the message: the service-control pipe, admin shares."""
    out = []
    if any(s in payload for s in _SVCCTL):
        out.append(("mark", "smb_svcctl"))
    if any(s in payload for s in _ADMIN):
        out.append(("mark", "smb_admin_share"))
    if payload[4:8] == b"\xfeSMB" and payload[16:18] == b"\x09\x00" and not payload[20] & 1:
        offset = int.from_bytes(payload[70:72], "little")  # SMB2 WRITE: DataOffset from the SMB2 header
        if _is_exe(payload[4 + offset:]):
            out.append(("mark", "smb_exe_write"))
    return out


def _dcerpc(payload: bytes) -> list[tuple[str, str]]:
    """A DCE/RPC bind naming the service-control interface (svcctl), over TCP."""
    return [("mark", "dcerpc_svcctl")] if _SVCCTL[2] in payload[:1024] else []


def _smb_marks(b: np.ndarray, avail: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Vectorised SMB markers from the first 72 payload bytes: ([mask per marker], rows to search)."""
    def u16(at: int) -> np.ndarray:
        return b[:, at].astype(np.int64) | (b[:, at + 1].astype(np.int64) << 8)

    smb1 = (b[:, 4] == 0xFF) & (b[:, 5] == 0x53) & (b[:, 6] == 0x4D) & (b[:, 7] == 0x42)
    smb2 = (b[:, 4] == 0xFE) & (b[:, 5] == 0x53) & (b[:, 6] == 0x4D) & (b[:, 7] == 0x42)
    cmd1, resp = b[:, 8], (b[:, 13] & 0x80) != 0
    status = u16(9) | (u16(11) << 16)
    mid, words = u16(34), b[:, 36]
    trans2 = smb1 & (cmd1 == 0x32)
    total_data = u16(44) | (u16(46) << 16)
    cmd2 = u16(16)
    marks = [smb1 & (cmd1 == 0x72), smb2 & (cmd2 == 0),
             trans2 & ~resp & (words >= 15) & (u16(65) == 0x0E),
             trans2 & resp & isin(mid, (81, 82)) & (status == 0xC0000002),
             smb1 & (cmd1 == 0xA0) & ~resp & (total_data >= 0x10000),
             smb1 & (cmd1 == 0x33)]
    search = (avail <= 4096) & ((smb1 & isin(cmd1, (0x75, 0xA2, 0x2F, 0x25)))
                                | (smb2 & isin(cmd2, (3, 5, 9, 11))))
    return marks, search


_SMB_NAMES = ("smb1", "smb2", "smb1_trans2_session_setup", "smb1_dp_reply", "smb1_nt_trans_large",
              "smb1_trans2_secondary")


def _rdp(payload: bytes) -> list[tuple[str, str]]:
    out = []
    tpkt_len = int.from_bytes(payload[2:4], "big")
    if len(payload) >= 7 and payload[5] == 0xE0 and (tpkt_len < 11 or payload[4] + 5 != tpkt_len):
        out.append(("mark", "rdp_bad_tpkt"))  # an X.224 Connection Request whose lengths disagree
    if b"ms_t120" in payload[:4096].lower():
        out.append(("mark", "rdp_ms_t120"))
    return out


def packet_items(data, decoded, keys: np.ndarray | None = None,
                 tried: np.ndarray | None = None) -> tuple[np.ndarray, list[tuple[str, str]]] | None:
    """(packet row per item, items) for the candidate packets of ``decoded``; None when none.

    With ``keys`` (flow key per packet) and ``tried`` (per packet, its flow's hint-tried bits),
    a flow's first DNS packet is skipped: the first-seen hint columns hold its question already.
    """
    start, avail, proto = decoded.payload_offset, decoded.payload_bytes, decoded.protocol
    sport, dport = decoded.src_port, decoded.dst_port
    head = head_bytes(data, start, avail, decoded.payload_head)
    tcp = proto == 6
    with_data = avail > 0
    dns = (avail >= 12) & isin(proto, (6, 17)) & (isin(sport, _DNS_PORTS) | isin(dport, _DNS_PORTS))
    dns &= tcp | ((head & 0x8000) == 0)  # UDP answers repeat their question: queries suffice
    http = tcp & isin(head, HTTP_PREFIX_CODES)
    smb = tcp & (avail >= 40) & (isin(sport, _SMB_PORTS) | isin(dport, _SMB_PORTS))
    rdp = tcp & (avail >= 7) & (avail <= 4096) & ((sport == 3389) | (dport == 3389)) & ((head >> 24) == 3)
    exe = with_data & (avail >= 64) & (((head >> 16) == 0x4D5A) | (head == 0x7F454C46))
    exe |= tcp & (avail >= 68) & ~http & ~dns & ~smb & _mz_at_four(data, start, avail, tcp, head)
    drive = ((head >> 24) | 0x20) - 0x61
    shell = tcp & (avail >= 3) & (avail <= 2048) & ~http & (
        (head == 0x4D696372) | ((drive >= 0) & (drive < 26) & (((head >> 8) & 0xFFFF) == 0x3A5C))
        | (((head >> 16) == 0x0D0A) & (((head & 0xFF) == 0x3A) | (head == 0x0D0A4D69))))
    rpc = tcp & (avail >= 72) & (avail <= 1024) & isin(head >> 8, (0x05000B, 0x05000E)) & ~smb
    icmp = isin(proto, (1, 58)) & (avail >= 20) & isin(sport, (0, 8, 128, 129)) & (head != 0)
    if keys is not None and tried is not None:
        dns = _later_dns(dns, keys, tried)
    rows_out: list[int] = []
    items: list[tuple[str, str]] = []
    _parse_each(data, np.flatnonzero(dns), start, avail, _dns, rows_out, items, shift=2 * tcp, same_from=2)
    req = http & ((head >> 8) != 0x485454)
    _parse_each(data, np.flatnonzero(req), start, avail, _http_request, rows_out, items, same_from=0)
    _parse_each(data, np.flatnonzero(http & ~req), start, avail, _http_response, rows_out, items)
    _parse_each(data, np.flatnonzero(rdp), start, avail, _rdp, rows_out, items)
    _parse_each(data, np.flatnonzero(exe & ~http), start, avail, _exe, rows_out, items)
    _parse_each(data, np.flatnonzero(shell), start, avail, _shell, rows_out, items)
    _parse_each(data, np.flatnonzero(icmp), start, avail, _icmp, rows_out, items)
    _parse_each(data, np.flatnonzero(rpc), start, avail, _dcerpc, rows_out, items)
    _smb_items(data, np.flatnonzero(smb), start, avail, rows_out, items)
    if not items:
        return None
    return np.array(rows_out, dtype=np.int64), items


def _later_dns(dns: np.ndarray, keys: np.ndarray, tried: np.ndarray) -> np.ndarray:
    """``dns`` without each flow's first DNS packet (first in the batch of a flow not tried before)."""
    rows = np.flatnonzero(dns)
    if not len(rows):
        return dns
    _, first = np.unique(keys[rows], return_index=True)
    lead = rows[first]
    out = dns.copy()
    out[lead[(tried[lead] & 3) == 0]] = False
    return out


def _mz_at_four(data, start: np.ndarray, avail: np.ndarray, tcp: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Rows whose payload holds ``MZ`` at offset 4 (a stage sent after a 4-byte length)."""
    out = np.zeros(len(start), dtype=bool)
    # a stage's 4-byte little-endian length is below 16 MiB: its fourth byte is 0 (most data is not)
    cand = np.flatnonzero(tcp & (avail >= 68) & ((head & 0xFF) == 0))
    if not len(cand) or not len(data):
        return out
    buf = np.frombuffer(data, dtype=np.uint8)
    at = np.minimum(start[cand] + 4, len(buf) - 2)
    out[cand] = (buf[at] == 0x4D) & (buf[at + 1] == 0x5A)
    return out


def _parse_each(data, rows: np.ndarray, start: np.ndarray, avail: np.ndarray, parse, rows_out: list,
                items: list, shift: np.ndarray | None = None, same_from: int | None = None) -> None:
    """Items of ``parse`` on each row's payload, in row order. With ``same_from``, payloads equal
    from that byte on (a DNS message's ID aside) are parsed once (``parse`` is pure there)."""
    if not len(rows):
        return
    s = start[rows] + (0 if shift is None else shift[rows])
    e = start[rows] + avail[rows]
    if same_from is not None:
        firsts, groups = distinct_payloads(data, s, e, skip=same_from)
        found = [parse(bytes(data[a:b])) for a, b in zip(s[firsts].tolist(), e[firsts].tolist())]
        for row, group in zip(rows.tolist(), groups.tolist()):
            got = found[group]
            if got:
                items.extend(got)
                rows_out.extend([row] * len(got))
        return
    for row, a, b in zip(rows.tolist(), s.tolist(), e.tolist()):
        got = parse(bytes(data[a:b]))
        if got:
            items.extend(got)
            rows_out.extend([row] * len(got))


def _smb_items(data, rows: np.ndarray, start: np.ndarray, avail: np.ndarray, rows_out: list, items: list) -> None:
    if not len(rows) or not len(data):
        return
    buf = np.frombuffer(data, dtype=np.uint8)
    idx = np.clip(start[rows, None] + np.arange(_GATHER), 0, len(buf) - 1)
    b = np.where(np.arange(_GATHER) < avail[rows, None], buf[idx], 0)
    marks, search = _smb_marks(b, avail[rows])
    for name, mask in zip(_SMB_NAMES, marks):
        hit = rows[mask]
        if len(hit):
            items.extend([("mark", name)] * len(hit))
            rows_out.extend(hit.tolist())
    _parse_each(data, rows[search], start, avail, _smb_python, rows_out, items)
