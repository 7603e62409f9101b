"""Port and host scans (MITRE T1046): many services probed, most of the probes failing.

Per (institution, source host), over a sliding window of flow time (default 60 s), the detector
counts the distinct destination ports, hosts and services (host, protocol, port) of its failed
connection attempts (SYN without SYN-ACK), the share of its flows that failed, and a threshold
random walk in the spirit of Jung et al.
(2004): each distinct service first contacted is an outcome, success or failure, and the
log-likelihood ratio ``sum(log P(outcome | scanner) / P(outcome | benign))`` is compared with
``log(p_detect / p_false)``. (The original TRW counts distinct hosts; counting services also
catches a vertical scan of one host.)

Only failed attempts are kept, for one window; every source's flow count and successful services
are summed per tumbling window (the current and the previous one give the ratio and the TRW).

An alert: entity = the scanner, entity_kind ``src_ip``, target = the scanned host or ``many``.

>>> from finsa.wire import FLOW
>>> scan = FLOW.make_batch({"src_ip": ["203.0.113.66"] * 60, "dst_ip": ["10.1.0.5"] * 60,
...     "dst_port": list(range(1, 61)), "protocol": [6] * 60, "src2dst_tcp_flags": [2] * 60,
...     "src2dst_packets": [1] * 60, "first_seen_ms": [1_000 + i for i in range(60)],
...     "last_seen_ms": [1_000 + i for i in range(60)], "institution_id": ["bank-a"] * 60})
>>> [(a["entity"], a["target"], a["technique"]) for a in PortScanDetector().process(scan)]
[('203.0.113.66', '10.1.0.5', 'T1046')]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from finsa.detectors.base import Detector, WindowDeduper, make_alert, severity_from_margin
from finsa.detectors.features import FlowFrame, KeyedTable, distinct_per_group, group, isin_keys, mix64
from finsa.detectors.state import KeyCounts, RowBuffer, newest_rows, unique
from finsa.metrics import REGISTRY
from finsa.wire import RecordBatch, ips_to_strings

__all__ = ["PortScanDetector"]

DROPPED = REGISTRY.counter("finsa_detector_state_dropped_total",
                           "Rows of detector state dropped because a bound was reached", ["detector"])


class PortScanDetector(Detector):
    """Vertical and horizontal scans, and a TRW sequential test, per source in a window."""

    name = "portscan"
    technique = "T1046"

    def __init__(self, *, min_ports: int = 20, min_hosts: int = 20, min_failed_ratio: float = 0.5,
                 theta0: float = 0.8, theta1: float = 0.2, p_detect: float = 0.99,
                 p_false: float = 0.01, trw_min_services: int = 10, max_buffer_rows: int = 200_000,
                 window_ms: int = 60_000, seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.min_ports, self.min_hosts, self.min_failed_ratio = min_ports, min_hosts, min_failed_ratio
        self.theta0, self.theta1, self.p_detect, self.p_false = theta0, theta1, p_detect, p_false
        self.trw_min_services, self.max_buffer_rows = trw_min_services, max_buffer_rows
        self._check(min_ports=(min_ports, 2, 65536), min_hosts=(min_hosts, 2, 1 << 24),
                    min_failed_ratio=(min_failed_ratio, 0.0, 1.0), theta0=(theta0, 0.01, 0.99),
                    theta1=(theta1, 0.01, 0.99), p_detect=(p_detect, 0.5, 0.9999),
                    p_false=(p_false, 1e-6, 0.5), trw_min_services=(trw_min_services, 1, 65536),
                    max_buffer_rows=(max_buffer_rows, 100, 10_000_000))
        if theta1 >= theta0:
            raise ValueError("portscan.theta1 (success rate of a scanner) must be below theta0")
        self._buf: RowBuffer | None = None
        self._watermark: dict[int, int] | None = None
        self._dedupe: WindowDeduper | None = None
        self._counts: KeyedTable | None = None
        self._failed: KeyCounts | None = None  # per source: its rows in ``_buf``

    # --- state -------------------------------------------------------------------------

    def _count_window(self, frame: FlowFrame) -> None:
        """Add every source's flows and successful services to its (source, window) counts."""
        window = frame.t_ms // self.window_ms
        g = frame.source_windows(self.window_ms)
        ok = np.flatnonzero(~frame.failed)
        pos = self._counts.upsert(g.keys)
        cols = self._counts.cols
        cols["window"][pos] = window[g.first]
        cols["flows"][pos] += g.count
        # distinct (source, service, window) of the successful flows: any row of one names its group
        cols["ok_services"][pos] += distinct_per_group(g, frame.dst_service, ok)
        newest = int(window.max())
        stale = cols["window"] < newest - 2  # coarse: keeps two windows of any institution's clock
        if stale.mean() > 0.5:
            self._counts.keep(~stale)

    def _window_counts(self, keys: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(flows, successful services) of each source over its current and previous window."""
        flows, ok = np.zeros(len(keys)), np.zeros(len(keys))
        for back in (0, 1):
            pos, found = self._counts.lookup(mix64(keys, window - back))
            flows += np.where(found, self._counts.cols["flows"][pos], 0.0)
            ok += np.where(found, self._counts.cols["ok_services"][pos], 0.0)
        return flows, ok

    def _min_failed(self) -> int:
        """Fewest failed attempts of a source that can alert: its distinct failed ports, hosts and
        services are at most its failed attempts, and the TRW's likelihood ratio grows by
        ``log((1 - theta1) / (1 - theta0))`` per failed service at most (one less, for rounding)."""
        step = math.log((1 - self.theta1) / (1 - self.theta0))
        trw = max(1, math.floor(math.log(self.p_detect / self.p_false) / step) - 1)
        return min(self.min_ports, self.min_hosts, trw)

    def _append(self, frame: FlowFrame, rows: np.ndarray) -> None:
        c = frame.cols
        if not isinstance(self._buf, RowBuffer):  # None, or a state pickled as one dict of columns
            self._buf = RowBuffer.of(self._buf)
        if getattr(self, "_failed", None) is None:  # first batch, or a detector pickled before the counts
            self._failed = KeyCounts()
            if len(self._buf):
                self._failed.add(self._buf.column("key"), 1.0)
        self._failed.add(frame.src_key[rows], 1.0)
        self._buf.append({"key": frame.src_key[rows], "inst_h": frame.inst_hash[rows], "t": frame.t_ms[rows],
                          "end": frame.end_ms[rows], "dst_h": frame.dst_h[rows],
                          "port": c["dst_port"][rows].astype(np.int64), "service": frame.dst_service[rows],
                          "flow_id": c["flow_id"][rows], "inst": c["institution_id"][rows],
                          "src": c["src_ip"][rows], "dst": c["dst_ip"][rows]})

    def _expire(self, frame: FlowFrame) -> None:
        for inst_h in np.unique(frame.inst_hash):
            wm = int(frame.end_ms[frame.inst_hash == inst_h].max())
            self._watermark[int(inst_h)] = max(wm, self._watermark.get(int(inst_h), wm))
        buf = self._buf
        t = buf.column("t")
        # rows past every institution's limit are kept by time: more of them than the bound, and
        # the bound decides alone (no per-row limit needed)
        newest_limit = max(self._watermark.values(), default=self.window_ms) - self.window_ms
        over = np.count_nonzero(t >= newest_limit) > self.max_buffer_rows
        keep = None if over else t >= self._limits(buf.column("inst_h"))
        if keep is None or keep.sum() > self.max_buffer_rows:
            keep = newest_rows(t, self.max_buffer_rows)
            DROPPED.inc(int(len(keep) - self.max_buffer_rows), detector=self.name)
        if not keep.all():
            self._failed.add(buf.column("key")[~keep], -1.0)
            buf.keep(keep)

    def _limits(self, inst_h: np.ndarray) -> np.ndarray:
        """Per row of institution ``inst_h``: the oldest flow start its window keeps (0 for an
        institution without a watermark)."""
        marks = np.array(sorted(self._watermark), dtype=np.uint64)
        if not len(marks):
            return np.zeros(len(inst_h), dtype=np.int64)
        limits = np.array([self._watermark[int(k)] - self.window_ms for k in marks.tolist()], dtype=np.int64)
        pos = np.minimum(np.searchsorted(marks, inst_h), len(marks) - 1)
        return np.where(marks[pos] == inst_h, limits[pos], 0)

    # --- scoring -----------------------------------------------------------------------

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:
        frame = self._frame(flows)
        if frame is None:
            return []
        if self._dedupe is None:
            self._watermark, self._dedupe = {}, WindowDeduper(self.window_ms)
            self._counts = KeyedTable(("window", "flows", "ok_services"))
        self._count_window(frame)
        rows = np.flatnonzero(frame.failed)
        if len(rows) == 0:
            return []
        self._append(frame, rows)
        self._expire(frame)
        keys = unique(frame.src_key[rows])
        # a source with fewer buffered attempts than any alert needs is not scored
        keys = keys[self._failed.of(keys) >= self._min_failed()]
        if not len(keys):
            return []
        sub = self._buf.select(isin_keys(self._buf.column("key"), keys))
        return self._score(sub)

    def _score(self, sub: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        g = group(sub["key"])
        failed = g.count.astype(np.float64)
        ports = distinct_per_group(g, sub["port"])
        hosts = distinct_per_group(g, sub["dst_h"])
        failed_services = distinct_per_group(g, sub["service"])
        flows, ok_services = self._window_counts(g.keys, g.max(sub["t"]) // self.window_ms)
        flows = np.maximum(flows, failed)
        llr = (failed_services * math.log((1 - self.theta1) / (1 - self.theta0))
               + ok_services * math.log(self.theta1 / self.theta0))
        services = failed_services + ok_services
        trw = np.where(services >= self.trw_min_services, llr / math.log(self.p_detect / self.p_false), 0.0)
        score = np.maximum.reduce([ports / self.min_ports, hosts / self.min_hosts, trw])
        ratio = failed / flows
        hits = np.flatnonzero((score >= 1.0) & (ratio >= self.min_failed_ratio))
        out = []
        for gi in hits:
            feats = {"flows": flows[gi], "failed": failed[gi], "failed_ratio": ratio[gi],
                     "distinct_failed_ports": ports[gi], "distinct_failed_hosts": hosts[gi],
                     "failed_services": failed_services[gi], "ok_services": ok_services[gi],
                     "trw_llr": llr[gi]}
            alert = self._alert(sub, g, int(gi), float(score[gi]), feats)
            if alert is not None:
                out.append(alert)
        return out

    def _alert(self, sub: dict[str, np.ndarray], g, gi: int, score: float,
               feats: dict[str, Any]) -> dict[str, Any] | None:
        mine = np.flatnonzero(g.inverse == gi)
        first = mine[0]
        inst, entity = str(sub["inst"][first]), ips_to_strings(sub["src"][first:first + 1])[0]
        time_ms = int(sub["end"][mine].max())
        if not self._dedupe.first(inst, entity, time_ms):
            return None
        target = ips_to_strings(sub["dst"][first:first + 1])[0] if feats["distinct_failed_hosts"] == 1 else "many"
        return make_alert(
            detector=self.name, technique=self.technique, institution_id=inst, entity=entity,
            entity_kind="src_ip", target=target, time_ms=time_ms,
            first_seen_ms=int(sub["t"][mine].min()), window_ms=self.window_ms,
            severity=min(4, severity_from_margin(score)), score=score,
            confidence=feats["failed_ratio"] * (1.0 - math.exp(-2.0 * score)),
            features=feats, flow_ids=sub["flow_id"][mine[:10]])
