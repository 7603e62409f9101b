"""Vectorised mapping of NetFlow v9 / IPFIX records (numpy structured arrays) to FLOW columns.

One call turns every record of one template (possibly gathered from many datagrams) into the
columns finsa carries: addresses (IPv4 as IPv4-mapped IPv6), ports (ICMP type/code as ports),
protocol, TCP flags, VLAN, first/last seen in ms since the epoch, and packets/bytes multiplied by
the exporter's sampling rate. RFC 5103 reverse elements (enterprise 29305) fill ``dst2src_*``;
a plain unidirectional record leaves them 0.

Times, in order of preference: absolute milliseconds (IE 152/153), NTP micro/nanoseconds
(154/155, 156/157), seconds (150/151), deltas from export time (158/159), sysUpTime-relative
(21/22: NetFlow v9 through the header's uptime, IPFIX through systemInitTimeMilliseconds), and
the export time when a record carries none.

Sampling: an inline samplingInterval (34) or samplerRandomInterval (50) in the record, else the
rate of its sampler id (48 or 302) in the options data of the same exporter and domain, else the
domain's last options rate, else 1.

>>> from finsa.collectors.export.templates import Template, Domain
>>> t = Template(256, ((8, 0, 4), (12, 0, 4), (4, 0, 1), (2, 0, 4), (1, 0, 4)))
>>> rec = np.frombuffer(bytes([10, 0, 0, 1, 10, 0, 0, 2, 17, 0, 0, 0, 3, 0, 0, 1, 0]), t.dtype)
>>> d = Domain(key=("192.0.2.1", 0), default_rate=10)
>>> c = template_columns(rec, np.array([1000]), None, d)
>>> int(c["src2dst_packets"][0]), int(c["src2dst_bytes"][0]), int(c["protocol"][0])
(30, 2560, 17)
"""

from __future__ import annotations

import numpy as np

from finsa.collectors.export.templates import Domain, Template

__all__ = ["template_columns", "absorb_options", "uint_field", "ip_field", "ipv4_mapped"]

_NTP_EPOCH_S = 2208988800
_END_REASONS = np.array([0, 0, 1, 2, 4, 4, 0, 0], dtype=np.uint8)  # IPFIX flowEndReason -> finsa


def uint_field(rec: np.ndarray, name: str) -> np.ndarray | None:
    """Field ``name`` as uint64 (big-endian integers of any length up to 8; longer: last 8 bytes)."""
    if name not in (rec.dtype.names or ()):
        return None
    col = rec[name]
    if col.ndim == 1:
        return col.astype(np.uint64)
    tail = col[:, -8:].astype(np.uint64)
    shifts = np.arange(tail.shape[1] - 1, -1, -1, dtype=np.uint64) * np.uint64(8)
    return np.bitwise_or.reduce(tail << shifts, axis=1) if tail.shape[1] else np.zeros(len(col), np.uint64)


def ipv4_mapped(addr_u32: np.ndarray) -> np.ndarray:
    """(n,16) uint8 IPv4-mapped IPv6 addresses from IPv4 addresses as integers."""
    out = np.zeros((len(addr_u32), 16), dtype=np.uint8)
    out[:, 10:12] = 0xFF
    out[:, 12:16] = addr_u32.astype(">u4").view(np.uint8).reshape(-1, 4)
    return out


def ip_field(rec: np.ndarray, name: str) -> np.ndarray | None:
    """Address field ``name`` (4 or 16 bytes) as (n,16) uint8; None when absent or odd-sized."""
    if name not in (rec.dtype.names or ()):
        return None
    col = rec[name]
    if col.ndim == 1 and col.dtype.itemsize == 4:
        return ipv4_mapped(col)
    if col.ndim == 2 and col.shape[1] == 16:
        return np.ascontiguousarray(col, dtype=np.uint8)
    return None


def _first(rec: np.ndarray, *names: str) -> np.ndarray | None:
    for name in names:
        col = uint_field(rec, name)
        if col is not None:
            return col
    return None


def _or_zero(col: np.ndarray | None, n: int) -> np.ndarray:
    return np.zeros(n, dtype=np.uint64) if col is None else col


def _ntp_ms(v: np.ndarray) -> np.ndarray:
    sec = (v >> np.uint64(32)).astype(np.int64) - _NTP_EPOCH_S
    frac = (v & np.uint64(0xFFFFFFFF)).astype(np.int64)
    return sec * 1000 + ((frac * 1000) >> 32)


def _times(rec: np.ndarray, export_ms: np.ndarray, uptime_ms: np.ndarray | None,
           domain: Domain) -> tuple[np.ndarray, np.ndarray]:
    """(first_seen_ms, last_seen_ms) as int64 for every record."""
    def one(ms: str, ntp_us: str, ntp_ns: str, sec: str, delta_us: str, uptime: str) -> np.ndarray:
        col = uint_field(rec, ms)
        if col is not None:
            return col.astype(np.int64)
        col = _first(rec, ntp_us, ntp_ns)
        if col is not None:
            return _ntp_ms(col)
        col = uint_field(rec, sec)
        if col is not None:
            return col.astype(np.int64) * 1000
        col = uint_field(rec, delta_us)
        if col is not None:
            return export_ms - (col // np.uint64(1000)).astype(np.int64)
        col = uint_field(rec, uptime)
        if col is not None and uptime_ms is not None:
            ago = (uptime_ms.astype(np.int64) - col.astype(np.int64)) & 0xFFFFFFFF
            return export_ms - ago
        if col is not None and domain.system_init_ms:
            return domain.system_init_ms + col.astype(np.int64)
        return export_ms.astype(np.int64)
    first = one("e152", "e154", "e156", "e150", "e158", "e22")
    last = one("e153", "e155", "e157", "e151", "e159", "e21")
    return first, last


def _sampling(rec: np.ndarray, n: int, domain: Domain) -> np.ndarray:
    rate = np.full(n, max(domain.default_rate, 1), dtype=np.uint64)
    ids = _first(rec, "e48", "e302")
    if ids is not None and domain.samplers:
        uniq, inverse = np.unique(ids, return_inverse=True)
        known = np.array([domain.samplers.get(int(u), max(domain.default_rate, 1)) for u in uniq], np.uint64)
        rate = known[inverse]
    inline = _first(rec, "e34", "e50")
    if inline is not None:
        rate = np.where(inline > 0, inline, rate)
    return rate


def _ports(rec: np.ndarray, proto: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    src = _or_zero(_first(rec, "e7", "e180", "e182"), n)
    dst = _or_zero(_first(rec, "e11", "e181", "e183"), n)
    icmp = (proto == 1) | (proto == 58)
    type_code = _first(rec, "e32", "e139", "e176", "e178")
    if type_code is None:  # NetFlow convention: type << 8 | code in the destination port
        type_code, icmp = dst, icmp & (src == 0)
    if icmp.any():
        src = np.where(icmp, (type_code >> np.uint64(8)) & np.uint64(0xFF), src)
        dst = np.where(icmp, type_code & np.uint64(0xFF), dst)
    return src, dst


def _addresses(rec: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(src, dst, ip_version); a template with both families uses IPv6 where it is set."""
    zeros = np.zeros((n, 16), dtype=np.uint8)
    found4 = [ip_field(rec, "e8"), ip_field(rec, "e12")]
    found6 = [ip_field(rec, "e27"), ip_field(rec, "e28")]
    has4, has6 = any(a is not None for a in found4), any(a is not None for a in found6)
    src4, dst4 = (zeros if a is None else a for a in found4)
    src6, dst6 = (zeros if a is None else a for a in found6)
    if has4 and has6:
        use6 = src6.any(axis=1) | dst6.any(axis=1)
        pick = use6[:, None]  # type: ignore[index]  # any(axis=1) of a 2-D array is an array
        return (np.where(pick, src6, src4), np.where(pick, dst6, dst4),
                np.where(use6, 6, 4).astype(np.uint8))
    if has6:
        return src6, dst6, np.full(n, 6, dtype=np.uint8)
    if has4:
        return src4, dst4, np.full(n, 4, dtype=np.uint8)
    return zeros, zeros, np.zeros(n, dtype=np.uint8)


def template_columns(rec: np.ndarray, export_ms: np.ndarray, uptime_ms: np.ndarray | None,
                     domain: Domain) -> dict[str, np.ndarray]:
    """FLOW columns (without ids and institution/sensor) for the records ``rec``."""
    n = len(rec)
    src_ip, dst_ip, version = _addresses(rec, n)
    ip_version = uint_field(rec, "e60")
    if ip_version is not None:
        version = np.where((ip_version == 4) | (ip_version == 6), ip_version, version).astype(np.uint8)
    proto = _or_zero(uint_field(rec, "e4"), n)
    src_port, dst_port = _ports(rec, proto, n)
    rate = _sampling(rec, n, domain)
    first, last = _times(rec, np.asarray(export_ms, dtype=np.int64), uptime_ms, domain)
    vlan = _first(rec, "e245", "e243", "e58")
    reason = uint_field(rec, "e136")
    return {
        "first_seen_ms": first, "last_seen_ms": last, "ip_version": version,
        "protocol": proto.astype(np.uint8), "src_ip": src_ip, "dst_ip": dst_ip,
        "src_port": src_port.astype(np.uint16), "dst_port": dst_port.astype(np.uint16),
        "vlan_id": _or_zero(vlan, n).astype(np.uint16) & np.uint16(0x0FFF),
        "src2dst_packets": _or_zero(_first(rec, "e2", "e86", "e24"), n) * rate,
        "src2dst_bytes": _or_zero(_first(rec, "e1", "e85", "e23"), n) * rate,
        "dst2src_packets": _or_zero(_first(rec, "r2", "r86"), n) * rate,
        "dst2src_bytes": _or_zero(_first(rec, "r1", "r85"), n) * rate,
        "src2dst_tcp_flags": (_or_zero(uint_field(rec, "e6"), n) & np.uint64(0xFF)).astype(np.uint8),
        "dst2src_tcp_flags": (_or_zero(uint_field(rec, "r6"), n) & np.uint64(0xFF)).astype(np.uint8),
        "end_reason": (np.zeros(n, np.uint8) if reason is None
                       else _END_REASONS[np.minimum(reason, np.uint64(7)).astype(np.intp)]),
    }


def _options_rate(row: dict[str, int]) -> int:
    if row.get("e310") and row.get("e309"):
        return row["e310"] // row["e309"]
    if row.get("e305") and "e306" in row:
        return (row["e305"] + row["e306"]) // row["e305"]
    return row.get("e34") or row.get("e50") or 0


def absorb_options(template: Template, rec: np.ndarray, domain: Domain) -> None:
    """Learn sampling rates (and system init time) from options data records of ``domain``."""
    wanted = [name for name in ("e34", "e48", "e50", "e160", "e302", "e305", "e306", "e309", "e310")
              if name in template.names]
    if not wanted:
        return
    cols = {name: uint_field(rec, name) for name in wanted}
    for i in range(len(rec)):
        row: dict[str, int] = {name: int(col[i]) for name, col in cols.items()}  # type: ignore[index]  # every wanted field is in the template
        if row.get("e160"):
            domain.system_init_ms = row["e160"]
        rate = _options_rate(row)
        if rate < 1:
            continue
        sampler = row.get("e48", row.get("e302"))
        if sampler is not None:
            domain.samplers[sampler] = rate
        domain.default_rate = rate
