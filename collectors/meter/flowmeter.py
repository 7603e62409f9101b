"""Bidirectional flow metering of packet batches into FLOW record batches.

Per chunk, every packet gets a canonical bidirectional key (the endpoint that sorts first is
"lo"), a 64-bit hash of it, and rows are grouped by sorting on the hash; flows already in the
table join their group as a pseudo row. :func:`finsa.collectors.meter.flow_ends.segment` cuts groups into
flows by the profile's timeouts, sums are taken with ``np.add.reduceat``, finished flows are
exported and the last flow of each key goes (back) into the :class:`FlowTable`.

>>> from finsa.collectors.pcap.capture import PacketBatch
>>> syn = bytes(12) + b"\\x08\\x00" + bytes.fromhex("450000280000400040060000c0a80001c0a80002") \\
...     + bytes.fromhex("04d2005000000000000000005002000000000000")
>>> m = FlowMeter("nfstream", sensor_id="s1")
>>> m.add(PacketBatch.from_packets([(0, syn), (200_000_000_000, syn)])).rows()[0]["src2dst_packets"]
1
>>> m.flush().rows()[0]["end_reason"], m.stats["flows"]
(4, 2)
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from finsa.collectors.meter.decode import SKIPPED, decode_packets
from finsa.collectors.meter.flowtable import FlowTable, take_flows, to_records
from finsa.collectors.meter.app_hints import Hints, packet_hints
from finsa.collectors.meter.payload_candidates import candidate_rows
from finsa.collectors.meter.flow_lists import FlowLists, complete_dns
from finsa.collectors.pcap.capture import PacketBatch, read_capture
from finsa.collectors.meter.profiles import BYTES_WIRE, MeterProfile, get_profile
from finsa.collectors.meter.segment_sums import segment_sums
from finsa.collectors.meter.keyed_rows import build_rows, first_hints, key_hashes, sort_keys
from finsa.collectors.meter.flow_ends import FIN, REASON_ACTIVE, REASON_FIN, REASON_IDLE, REASON_RST, RST, segment
from finsa.metrics import REGISTRY
from finsa.wire import END_REASONS, RecordBatch

__all__ = ["FlowMeter", "meter_capture", "PACKETS", "FLOWS"]

PACKETS = REGISTRY.counter("finsa_collector_packets_total", "Packets read by flow meters")
FLOWS = REGISTRY.counter("finsa_collector_flows_total", "Flows exported by flow meters", ["reason"])
ACTIVE_FLOWS = REGISTRY.gauge("finsa_collector_active_flows", "Flows in flow tables", ["sensor"])
_SWEEP_EVERY_MS = 1000


class FlowMeter:
    """Meters packet batches into bidirectional flows by a :class:`MeterProfile`."""

    def __init__(self, profile: str | MeterProfile = "nfstream", institution_id: str = "",
                 sensor_id: str = "", idle_timeout_ms: int | None = None,
                 active_timeout_ms: int | None = None) -> None:
        self.profile = get_profile(profile, idle_timeout_ms, active_timeout_ms)
        self.institution_id, self.sensor_id = institution_id, sensor_id
        self._sensor_hash = zlib.crc32(f"{institution_id}/{sensor_id}".encode()) << 32
        self.table = FlowTable()
        self.lists = FlowLists()
        self._clock_ms: int | None = None
        self._last_sweep_ms = 0
        self.stats: dict = {"packets": 0, "flows": 0, "skipped": {}}

    @property
    def clock_ms(self) -> int:
        """Capture time of the latest packet (ms since the epoch); 0 before the first."""
        return self._clock_ms or 0

    def add(self, packets: PacketBatch) -> RecordBatch | None:
        """Meter a batch; return the flows that ended while adding it (or None)."""
        self.stats["packets"] += len(packets)
        PACKETS.inc(len(packets))
        decoded = decode_packets(packets, self.profile.tunnels)
        later = decoded.fragment == 2
        n_later = int(np.count_nonzero(later))
        skipped = dict(decoded.skipped)
        if n_later:
            skipped["non_first_fragment"] = n_later
            SKIPPED.inc(n_later, reason="non_first_fragment")
            decoded = decoded.take(np.flatnonzero(~later))
        for reason, count in skipped.items():
            self.stats["skipped"][reason] = self.stats["skipped"].get(reason, 0) + count
        if not len(decoded):
            return None
        t_ms = packets.ts_ns[decoded.index] // 1_000_000
        start = t_ms[0] if self._clock_ms is None else self._clock_ms
        t_ms = np.maximum.accumulate(np.concatenate([[start], t_ms]))[1:]
        self._clock_ms = int(t_ms[-1])
        if self.profile.byte_accounting == BYTES_WIRE:
            size = packets.wirelen[decoded.index].astype(np.int64)
        else:
            size = decoded.ip_bytes
        out = [self._meter(packets, decoded, t_ms, size)]
        if self.clock_ms - self._last_sweep_ms >= _SWEEP_EVERY_MS:
            out.append(self.expire(self.clock_ms))
            self._last_sweep_ms = self.clock_ms
        return self._join(out)

    def _meter(self, packets: PacketBatch, decoded, t_ms: np.ndarray, size: np.ndarray) -> RecordBatch | None:
        hashes, dir_lo = key_hashes(decoded, self.profile.vlan_in_key)
        keys = sort_keys(hashes)
        slots = self.table.lookup(keys.uniq)
        in_table = slots >= 0
        tried = keys.per_packet(np.where(in_table, self.table.cols["hint_tried"][slots], 0))
        hints = self._payload_facts(packets, decoded, hashes, dir_lo, t_ms, tried)
        pseudo_slots = slots[in_table]
        rows = build_rows(self.table.take(pseudo_slots, hints_where="compact"), pseudo_slots, in_table, keys,
                          decoded, t_ms, size, hashes, dir_lo, hints)
        boundary = segment(rows.seg, self.profile)
        starts = np.flatnonzero(boundary)
        flows = self._aggregate(rows, starts)
        n_seg = len(starts)
        next_start = np.append(starts[1:], len(boundary))
        final = np.ones(n_seg, dtype=bool)
        final[:-1] = rows.seg.hash[next_start[:-1]] != rows.seg.hash[starts[:-1]]
        # the last flow of each key is stored: in the pseudo row's slot or a new one
        fin_idx = np.flatnonzero(final)
        group_first = np.searchsorted(starts, np.flatnonzero(
            np.concatenate([[True], rows.seg.hash[1:] != rows.seg.hash[:-1]])))
        had_slot = rows.slot[starts[group_first]]
        new = had_slot < 0
        had_slot[new] = self.table.allocate(flows["hash"][fin_idx[new]])
        self.table.store(had_slot, take_flows(flows, fin_idx))
        done = np.flatnonzero(~final)
        if not len(done):
            return None
        ended = take_flows(flows, done)
        return self._export(ended, self._end_reasons(ended))

    def _payload_facts(self, packets: PacketBatch, decoded, hashes: np.ndarray, dir_lo: np.ndarray,
                       t_ms: np.ndarray, tried: np.ndarray) -> Hints | None:
        """First-seen hints and list items of the packets a payload test may accept (one cheap
        prefilter, :func:`candidate_rows`; the parsers then see only those rows)."""
        rows, packed = candidate_rows(packets.data, decoded)
        if not len(rows):
            return None
        sub = decoded.take(rows)
        sub.payload_head = packed
        h, lo, tr = hashes[rows], dir_lo[rows], tried[rows]
        self.lists.observe(packets.data, sub, h, lo, t_ms[rows], tr)
        hints = packet_hints(packets, sub, h * np.uint64(2) + lo, lo, tr)
        if hints is not None:
            hints.rows, hints.tried_rows = rows[hints.rows], rows[hints.tried_rows]
        return hints

    def _aggregate(self, rows, starts: np.ndarray) -> dict[str, np.ndarray]:
        flows = segment_sums(rows.cols, rows.seg.t, starts)
        flows.update(rows.first.gather_all(starts))
        flows.update(first_hints(rows, starts, flows["hinted"]))
        return flows

    def _export(self, flows: dict[str, np.ndarray], reasons: np.ndarray | int) -> RecordBatch:
        batch = to_records(flows, reasons, self.institution_id, self.sensor_id, self._sensor_hash)
        batch.columns.update(self.lists.columns(flows["hash"], flows["first_ms"], flows["last_ms"], flows["src_is_lo"]))
        complete_dns(batch.columns)
        self.stats["flows"] += len(batch)
        for code, count in zip(*np.unique(batch.columns["end_reason"], return_counts=True)):
            FLOWS.inc(int(count), reason=END_REASONS.get(int(code), str(int(code))))
        ACTIVE_FLOWS.set(len(self.table), sensor=self.sensor_id)
        return batch

    @property
    def _shortest_idle_ms(self) -> int:
        """No flow's idle timeout is shorter (see :meth:`_idle_timeouts`)."""
        p = self.profile
        out = min(p.idle_timeout_ms, p.other_idle_timeout_ms or p.idle_timeout_ms)
        if p.end_on_fin_rst:
            out = min(out, p.close_linger_ms)
        return min(out, p.syn_timeout_ms) if p.syn_timeout_ms else out

    def _idle_timeouts(self, flows: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(effective idle timeout per flow, closed mask, reset mask) by the profile's rules."""
        p = self.profile
        proto, lo_f, hi_f = flows["protocol"], flows["lo_flags"], flows["hi_flags"]
        timeout = np.where(proto == 6, p.idle_timeout_ms, p.other_idle_timeout_ms or p.idle_timeout_ms)
        rst = (proto == 6) & (((lo_f | hi_f) & RST) != 0)
        closed = rst | ((proto == 6) & ((lo_f & FIN) != 0) & ((hi_f & FIN) != 0))
        if p.end_on_fin_rst:
            timeout = np.where(closed, np.minimum(timeout, p.close_linger_ms), timeout)
        else:
            closed = rst = np.zeros(len(proto), dtype=bool)
        if p.syn_timeout_ms:
            answered = np.where(flows["src_is_lo"], flows["hi_pkts"], flows["lo_pkts"]) > 0
            timeout = np.where((proto == 6) & ~answered, np.minimum(timeout, p.syn_timeout_ms), timeout)
        return timeout, closed, rst

    def _end_reasons(self, flows: dict[str, np.ndarray]) -> np.ndarray:
        """Whichever deadline came first: the active timeout, or the idle one (fin/rst if closed).

        The same rule for flows cut when a packet arrives and flows swept by expire(), so the
        reason does not depend on how the packets were chunked.
        """
        timeout, closed, rst = self._idle_timeouts(flows)
        active_first = flows["first_ms"] + self.profile.active_timeout_ms < flows["last_ms"] + timeout
        reason = np.where(rst, REASON_RST, np.where(closed, REASON_FIN, REASON_IDLE))
        return np.where(active_first, REASON_ACTIVE, reason).astype(np.uint8)

    def expire(self, now_ms: int) -> RecordBatch | None:
        """Export the flows that are idle (or past the active timeout) at capture time ``now_ms``."""
        if not len(self.table):
            return None
        c = self.table.cols  # whole columns (free slots masked out below): no gather of the live ones
        live = self.table.live
        if now_ms - c["last_ms"].min(where=live, initial=now_ms) < self._shortest_idle_ms \
                and now_ms - c["first_ms"].min(where=live, initial=now_ms) < self.profile.active_timeout_ms:
            return None  # no flow has been idle for the shortest timeout or active for the active one
        keys = ("protocol", "lo_flags", "hi_flags", "src_is_lo", "lo_pkts", "hi_pkts", "first_ms", "last_ms")
        view = {k: c[k] for k in keys}
        timeout, _, _ = self._idle_timeouts(view)
        gone = (now_ms - view["last_ms"] >= timeout) | (now_ms - view["first_ms"] >= self.profile.active_timeout_ms)
        gone &= live
        if not gone.any():
            return None
        slots = np.flatnonzero(gone)
        flows = self.table.take(slots, hints_where="compact")
        self.table.release(slots)
        return self._export(flows, self._end_reasons(flows))

    def flush(self) -> RecordBatch | None:
        """Export every flow left in the table (end_reason 4)."""
        live = np.flatnonzero(self.table.live)
        if not len(live):
            return None
        flows = self.table.take(live, hints_where="compact")
        self.table.release(live)
        return self._export(flows, 4)

    @staticmethod
    def _join(parts: list[RecordBatch | None]) -> RecordBatch | None:
        present = [p for p in parts if p is not None and len(p)]
        if not present:
            return None
        return present[0] if len(present) == 1 else RecordBatch.concat(present)


def meter_capture(source: str | Path | IO[bytes], profile: str | MeterProfile = "nfstream",
                  institution_id: str = "", sensor_id: str = "", **overrides) -> Iterator[RecordBatch]:
    """Meter a whole capture; yield FLOW batches as flows end, the rest flushed at the end.

    ``overrides`` are FlowMeter keyword arguments (idle_timeout_ms, active_timeout_ms) and
    ``chunk_packets`` for the reader.
    """
    chunk_packets = overrides.pop("chunk_packets", 65536)
    meter = FlowMeter(profile, institution_id, sensor_id, **overrides)
    for batch in read_capture(source, chunk_packets):
        out = meter.add(batch)
        if out is not None:
            yield out
    out = meter.flush()
    if out is not None:
        yield out
