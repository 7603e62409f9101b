"""Columnar packet descriptions and their vectorised encoding into Ethernet/IPv4/TCP|UDP frames.

:class:`Packets` holds one row per packet (time, addresses, ports, TCP flags, sequence numbers,
TTL, IP id, a payload id from :class:`~finsa.scenario.payloads.PayloadTable`).
:func:`encode_frames` turns rows into frame bytes with correct IPv4 total length, IP header
checksum and TCP/UDP checksum (pseudo-header, header and payload), all in numpy: headers are
rows of a matrix, checksums are sums over its 16-bit columns. SYN and SYN-ACK rows can carry an
MSS option. Frames shorter than 60 bytes are padded with zeros, as on the wire.

>>> import numpy as np
>>> from finsa.scenario.payloads import PayloadTable
>>> table = PayloadTable()
>>> pk = Packets.from_columns(ts_ns=[0], src=[0x0A000001], dst=[0xC0000201], proto=[6],
...     sport=[40000], dport=[443], flags=[SYN], opt=[1], payload=[0])
>>> buf, offsets, lengths = encode_frames(pk, table, np.zeros(1, bool), np.zeros(1, bool))
>>> int(lengths[0]), bytes(buf[12:14]).hex()
(60, '0800')
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from finsa.scenario.payloads import PayloadTable

__all__ = ["Packets", "encode_frames", "FIN", "SYN", "RST", "PSH", "ACK", "GATEWAY_MAC"]

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
#: The tap's router: every packet from or to an address outside the institution goes through it.
GATEWAY_MAC = bytes.fromhex("02fe00000001")
_HEADER_WIDTH = 14 + 20 + 24
_MSS_OPTION = bytes.fromhex("020405b4")

_DTYPES = {"ts_ns": np.int64, "src": np.uint32, "dst": np.uint32, "proto": np.uint8,
           "sport": np.uint16, "dport": np.uint16, "flags": np.uint8, "seq": np.uint32,
           "ack": np.uint32, "win": np.uint16, "ttl": np.uint8, "ip_id": np.uint16,
           "opt": np.uint8, "payload": np.int32}


@dataclass
class Packets:
    """One row per packet; all arrays have the same length."""

    ts_ns: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    proto: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    flags: np.ndarray
    seq: np.ndarray
    ack: np.ndarray
    win: np.ndarray
    ttl: np.ndarray
    ip_id: np.ndarray
    opt: np.ndarray
    payload: np.ndarray

    def __len__(self) -> int:
        return len(self.ts_ns)

    @classmethod
    def from_columns(cls, **columns: object) -> "Packets":
        """Rows from column values; missing columns get defaults (TTL 64, window 64240)."""
        n = len(columns["ts_ns"])  # type: ignore[arg-type]  # ts_ns is always a sequence
        defaults = {"ttl": 64, "win": 64240}
        out = {}
        for name, dtype in _DTYPES.items():
            value = columns.get(name, defaults.get(name, 0))
            out[name] = np.broadcast_to(np.asarray(value, dtype=dtype), (n,)).copy()
        return cls(**out)

    @classmethod
    def concat(cls, parts: list["Packets"]) -> "Packets":
        if not parts:
            return cls.from_columns(ts_ns=[])
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    def take(self, index: np.ndarray) -> "Packets":
        return Packets(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def sorted(self) -> "Packets":
        """Rows in time order (stable: rows of the same instant keep their order)."""
        return self.take(np.argsort(self.ts_ns, kind="stable"))


def _mac_rows(addresses: np.ndarray, local: np.ndarray) -> np.ndarray:
    """(n, 6) MACs: 02:00:<IPv4> for local hosts, the gateway's for everything else."""
    macs = np.empty((len(addresses), 6), dtype=np.uint8)
    macs[:, 0], macs[:, 1] = 0x02, 0x00
    macs[:, 2:] = addresses.astype(">u4").view(np.uint8).reshape(-1, 4)
    macs[~local] = np.frombuffer(GATEWAY_MAC, dtype=np.uint8)
    return macs


def _put16(hdr: np.ndarray, col: int, values: np.ndarray) -> None:
    hdr[:, col] = (values >> 8) & 0xFF
    hdr[:, col + 1] = values & 0xFF


def _put32(hdr: np.ndarray, col: int, values: np.ndarray) -> None:
    hdr[:, col:col + 4] = values.astype(">u4").view(np.uint8).reshape(-1, 4)


def _fold(total: np.ndarray) -> np.ndarray:
    for _ in range(3):
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def _word_sum(hdr: np.ndarray, start: int, stop: int) -> np.ndarray:
    words = hdr[:, start:stop].astype(np.uint64)
    return (words[:, 0::2] * 256 + words[:, 1::2]).sum(axis=1)


def _headers(pk: Packets, l4_bytes: np.ndarray, payload_bytes: np.ndarray,
             src_local: np.ndarray, dst_local: np.ndarray) -> np.ndarray:
    n = len(pk)
    hdr = np.zeros((n, _HEADER_WIDTH), dtype=np.uint8)
    hdr[:, 0:6], hdr[:, 6:12] = _mac_rows(pk.dst, dst_local), _mac_rows(pk.src, src_local)
    hdr[:, 12], hdr[:, 14] = 0x08, 0x45
    _put16(hdr, 16, (20 + l4_bytes + payload_bytes).astype(np.int64))
    _put16(hdr, 18, pk.ip_id.astype(np.int64))
    hdr[:, 20] = 0x40  # don't fragment
    hdr[:, 22], hdr[:, 23] = pk.ttl, pk.proto
    _put32(hdr, 26, pk.src)
    _put32(hdr, 30, pk.dst)
    _put16(hdr, 24, _fold(_word_sum(hdr, 14, 34)).astype(np.int64))
    _put16(hdr, 34, pk.sport.astype(np.int64))
    _put16(hdr, 36, pk.dport.astype(np.int64))
    tcp = pk.proto == 6
    udp = ~tcp
    hdr[udp, 38:40] = _u16(l4_bytes[udp] + payload_bytes[udp])
    hdr[tcp, 38:42] = pk.seq[tcp].astype(">u4").view(np.uint8).reshape(-1, 4)
    hdr[tcp, 42:46] = pk.ack[tcp].astype(">u4").view(np.uint8).reshape(-1, 4)
    hdr[tcp, 46] = (l4_bytes[tcp] // 4) << 4
    hdr[tcp, 47] = pk.flags[tcp]
    hdr[tcp, 48:50] = _u16(pk.win[tcp])
    with_opt = tcp & (pk.opt == 1)
    hdr[with_opt, 54:58] = np.frombuffer(_MSS_OPTION, dtype=np.uint8)
    return hdr


def _u16(values: np.ndarray) -> np.ndarray:
    return values.astype(">u2").view(np.uint8).reshape(-1, 2)


def encode_frames(pk: Packets, table: PayloadTable, src_local: np.ndarray,
                  dst_local: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames of all rows: (buffer, offsets, lengths); ``*_local`` mark addresses seen behind the tap."""
    pay_lengths, pay_sums = table.arrays()
    payload_bytes = pay_lengths[pk.payload]
    tcp = pk.proto == 6
    l4_bytes = np.where(tcp, np.where(pk.opt == 1, 24, 20), 8).astype(np.int64)
    hdr = _headers(pk, l4_bytes, payload_bytes, src_local, dst_local)
    segment = (l4_bytes + payload_bytes).astype(np.uint64)
    pseudo = _word_sum(hdr, 26, 34) + pk.proto.astype(np.uint64) + segment
    checksum = _fold(pseudo + _word_sum(hdr, 34, _HEADER_WIDTH) + pay_sums[pk.payload])
    checksum[~tcp & (checksum == 0)] = 0xFFFF  # UDP: a computed zero is sent as all ones
    hdr[tcp, 50:52] = _u16(checksum[tcp])
    hdr[~tcp, 40:42] = _u16(checksum[~tcp])
    header_bytes = 34 + l4_bytes
    lengths = np.maximum(60, header_bytes + payload_bytes)
    offsets = np.zeros(len(pk), dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    buf = np.zeros(int(lengths.sum()), dtype=np.uint8)
    cols = np.arange(_HEADER_WIDTH)
    keep = cols[None, :] < header_bytes[:, None]
    buf[(offsets[:, None] + cols[None, :])[keep]] = hdr[keep]
    _scatter_payloads(buf, offsets + header_bytes, pk.payload, table)
    return buf, offsets, lengths


def _scatter_payloads(buf: np.ndarray, starts: np.ndarray, payload_ids: np.ndarray,
                      table: PayloadTable) -> None:
    """Copy each row's payload to ``buf[starts[i]:]``; one numpy assignment per unique payload."""
    order = np.argsort(payload_ids, kind="stable")
    ids, first = np.unique(payload_ids[order], return_index=True)
    bounds = np.append(first, len(order))
    for k, pid in enumerate(ids):
        blob = table.blob(int(pid))
        if not blob:
            continue
        rows = order[bounds[k]:bounds[k + 1]]
        data = np.frombuffer(blob, dtype=np.uint8)
        buf[(starts[rows][:, None] + np.arange(len(data))[None, :]).ravel()] = np.tile(data, len(rows))
