"""Flow-export decoding: datagrams of any supported protocol in, FLOW record batches out.

:class:`ExportDecoder` recognises each datagram by its version field: NetFlow v5 (u16 = 5),
NetFlow v9 (9), IPFIX (10), sFlow v5 (u32 = 5 followed by an agent address type 1 or 2). It
keeps the template caches and sampler tables of every exporter, and accumulates decoded records
until :meth:`ExportDecoder.take` returns them as one :data:`finsa.wire.FLOW` batch with the
configured institution and sensor ids and flow ids unique per sensor (a counter started from
the decoder's creation time in ns). Per datagram only headers are read; records are decoded
with numpy when taken, many datagrams at once. Datagram and record counters are kept locally
and added to the metrics registry on each take (or :meth:`ExportDecoder.publish_metrics`). A malformed datagram is counted by reason in
``finsa_export_datagrams_skipped_total`` and skipped: :meth:`feed` never raises.

>>> dec = ExportDecoder("bank-a", "edge-1")
>>> dec.feed(b"not a flow datagram", "192.0.2.1")
0
>>> dec.take() is None
True
"""

from __future__ import annotations

import struct
import time
from typing import Iterable

import numpy as np

from finsa.collectors.export import metrics as m
from finsa.collectors.export.flowsets import TemplatedState
from finsa.collectors.export.ipfix import decode_ipfix
from finsa.collectors.export.netflow5 import netflow5_chunk, netflow5_columns
from finsa.collectors.export.netflow9 import decode_netflow9
from finsa.collectors.export.sflow import SFLOW_ROW_FIELDS, decode_sflow
from finsa.wire import FLOW, RecordBatch

__all__ = ["ExportDecoder", "detect_protocol", "MAX_DATAGRAM_BYTES"]

MAX_DATAGRAM_BYTES = 65535
_VERSIONS = {5: "netflow5", 9: "netflow9", 10: "ipfix"}


def detect_protocol(data: bytes) -> str | None:
    """'netflow5', 'netflow9', 'ipfix', 'sflow' or None, from the first bytes of a datagram.

    >>> detect_protocol(b"\\x00\\x0a\\x00\\x10"), detect_protocol(b"\\x00\\x00\\x00\\x05\\x00\\x00\\x00\\x01")
    ('ipfix', 'sflow')
    """
    if len(data) < 4 or data[0]:
        return None
    if data[1]:
        return _VERSIONS.get(data[1])
    if len(data) >= 8 and data[:4] == b"\x00\x00\x00\x05" and data[4:8] in (b"\x00\x00\x00\x01", b"\x00\x00\x00\x02"):
        return "sflow"
    return None


class ExportDecoder:
    """Decode export datagrams of many exporters into FLOW batches of one sensor."""

    def __init__(self, institution_id: str, sensor_id: str, flow_id_base: int | None = None) -> None:
        if not institution_id or not sensor_id:
            raise ValueError("institution_id and sensor_id must be non-empty")
        self.institution_id, self.sensor_id = institution_id, sensor_id
        self.state = TemplatedState()
        self._v5_chunks: list[tuple] = []
        self._v5_rows = 0
        self._datagrams: dict[str, int] = {}
        self._records: dict[str, int] = {}
        self._sflow_rows: list[tuple] = []
        self._next_flow_id = time.time_ns() if flow_id_base is None else flow_id_base

    @property
    def rows(self) -> int:
        """Records decoded and not yet taken."""
        return self._v5_rows + len(self._sflow_rows) + self.state.rows

    def feed(self, data: bytes, exporter: str, received_ms: int | None = None) -> int:
        """Decode one datagram from ``exporter`` (its address as text); records added."""
        if len(data) > MAX_DATAGRAM_BYTES:
            m.skip("oversized")
            return 0
        protocol = detect_protocol(data)
        if protocol is None:
            m.skip("unknown_protocol")
            return 0
        self._datagrams[protocol] = self._datagrams.get(protocol, 0) + 1
        data = bytes(data)
        try:
            added = self._dispatch(protocol, data, exporter, received_ms)
        except (ValueError, struct.error, IndexError) as exc:
            reason = exc.args[0] if exc.args and isinstance(exc.args[0], str) and " " not in exc.args[0] else ""
            m.skip(reason or "malformed")
            return 0
        if added:
            self._records[protocol] = self._records.get(protocol, 0) + added
        return added

    def _dispatch(self, protocol: str, data: bytes, exporter: str, received_ms: int | None) -> int:
        if protocol == "netflow9":
            return decode_netflow9(data, exporter, self.state)
        if protocol == "ipfix":
            return decode_ipfix(data, exporter, self.state)
        if protocol == "netflow5":
            chunk = netflow5_chunk(data)
            if not chunk or not chunk[1]:
                return 0
            self._v5_chunks.append(chunk)
            self._v5_rows += chunk[1]
            return chunk[1]
        now_ms = time.time_ns() // 1_000_000 if received_ms is None else received_ms
        return decode_sflow(data, now_ms, self._sflow_rows)

    def feed_many(self, datagrams: Iterable[tuple[str, bytes]], received_ms: int | None = None) -> int:
        """Decode (exporter, datagram) pairs in order; records added."""
        return sum(self.feed(data, exporter, received_ms) for exporter, data in datagrams)

    def publish_metrics(self) -> None:
        """Add the datagram and record counts kept locally (cheaper per datagram) to the registry."""
        for protocol, n in self._datagrams.items():
            m.DATAGRAMS.inc(n, protocol=protocol)
        for protocol, n in self._records.items():
            m.RECORDS.inc(n, protocol=protocol)
        for protocol, n in self.state.refreshed.items():
            m.TEMPLATES.inc(n, protocol=protocol, event="refreshed")
        self._datagrams, self._records, self.state.refreshed = {}, {}, {}

    def take(self) -> RecordBatch | None:
        """Every record decoded since the last take, as one FLOW batch (None when there is none)."""
        self.publish_metrics()
        chunks = self.state.flush()
        if self._v5_chunks:
            chunks.append(netflow5_columns(self._v5_chunks))
        if self._sflow_rows:
            chunks.append(_sflow_columns(self._sflow_rows))
        self._v5_chunks, self._v5_rows, self._sflow_rows = [], 0, []
        chunks = [c for c in chunks if len(c["protocol"])]
        if not chunks:
            return None
        n = sum(len(c["protocol"]) for c in chunks)
        columns: dict[str, object] = {}
        for name in {k for c in chunks for k in c}:
            f = FLOW.field(name)
            columns[name] = np.concatenate([f.coerce(c[name]) if name in c else f.empty(len(c["protocol"]))
                                            for c in chunks])
        if "last_seen_ms" not in columns:
            columns["last_seen_ms"] = columns["first_seen_ms"]
        columns["flow_id"] = np.arange(self._next_flow_id, self._next_flow_id + n, dtype=np.uint64)
        self._next_flow_id += n
        columns["institution_id"] = _constant_text(self.institution_id, n)
        columns["sensor_id"] = _constant_text(self.sensor_id, n)
        return FLOW.make_batch(columns, n_rows=n)


def _constant_text(value: str, n: int) -> np.ndarray:
    """An object column of ``n`` times ``value`` (30x faster than ``np.full`` with dtype object).

    >>> _constant_text("bank-a", 2).tolist()
    ['bank-a', 'bank-a']
    """
    out = np.empty(n, dtype=object)
    out[:] = value
    return out


def _sflow_columns(rows: list[tuple]) -> dict[str, np.ndarray]:
    cols = list(zip(*rows))
    out: dict[str, np.ndarray] = {}
    for name, values in zip(SFLOW_ROW_FIELDS, cols):
        if name in ("src_ip", "dst_ip"):
            out[name] = np.frombuffer(b"".join(values), dtype=np.uint8).reshape(-1, 16).copy()
        else:
            out[name] = FLOW.field(name).coerce(list(values))
    out["last_seen_ms"] = out["first_seen_ms"]
    return out
