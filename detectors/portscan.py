"""Port and host scans (MITRE T1046): many services probed, most of the probes failing.

Per (institution, source host), over a sliding window of flow time (default 60 s), the detector
counts distinct destination ports, hosts and services (host, protocol, port), the share of failed
connection attempts (SYN without SYN-ACK), and a threshold random walk in the spirit of Jung et al.
(2004): each distinct service first contacted is an outcome, success or failure, and the
log-likelihood ratio ``sum(log P(outcome | scanner) / P(outcome | benign))`` is compared with
``log(p_detect / p_false)``. (The original TRW counts distinct hosts; counting services also
catches a vertical scan of one host.)

Only sources with at least one failed attempt in a batch, or already in the window, are kept
across batches: a benign host whose connections succeed costs nothing after the batch.

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
from finsa.detectors.features import FlowFrame, distinct_per_group, frame_of, group, mix64
from finsa.metrics import REGISTRY
from finsa.wire import RecordBatch, ips_to_strings

__all__ = ["PortScanDetector"]

DROPPED = REGISTRY.counter("finsa_detector_state_dropped_total",
                           "Rows of detector state dropped because a bound was reached", ["detector"])

_NUMERIC = ("key", "inst_h", "t", "end", "dst_h", "port", "service", "failed", "flow_id")
_OTHER = ("inst", "src", "dst")


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
        self._buf: dict[str, np.ndarray] | None = None
        self._watermark: dict[int, int] | None = None
        self._dedupe: WindowDeduper | None = None

    # --- state -------------------------------------------------------------------------

    def _candidates(self, frame: FlowFrame) -> np.ndarray:
        keys = np.unique(frame.src_key[frame.failed])
        if self._buf is not None and len(self._buf["key"]):
            keys = np.union1d(keys, self._buf["key"])
        return np.flatnonzero(np.isin(frame.src_key, keys)) if len(keys) else np.zeros(0, np.int64)

    def _append(self, frame: FlowFrame, rows: np.ndarray) -> None:
        c = frame.cols
        new = {"key": frame.src_key[rows], "inst_h": frame.inst_hash[rows], "t": frame.t_ms[rows],
               "end": frame.end_ms[rows], "dst_h": frame.dst_h[rows],
               "port": c["dst_port"][rows].astype(np.int64), "service": frame.dst_service[rows],
               "failed": frame.failed[rows], "flow_id": c["flow_id"][rows],
               "inst": c["institution_id"][rows], "src": c["src_ip"][rows], "dst": c["dst_ip"][rows]}
        if self._buf is None:
            self._buf = new
        else:
            self._buf = {k: np.concatenate([self._buf[k], new[k]]) for k in new}

    def _expire(self, frame: FlowFrame) -> None:
        for inst_h in np.unique(frame.inst_hash):
            mine = frame.inst_hash == inst_h
            wm = int(frame.end_ms[mine].max())
            self._watermark[int(inst_h)] = max(wm, self._watermark.get(int(inst_h), wm))
        buf = self._buf
        limit = np.zeros(len(buf["t"]), dtype=np.int64)
        for inst_h, wm in self._watermark.items():
            limit[buf["inst_h"] == np.uint64(inst_h)] = wm - self.window_ms
        keep = buf["t"] >= limit
        if keep.sum() > self.max_buffer_rows:
            newest = np.argsort(buf["t"], kind="stable")[-self.max_buffer_rows:]
            keep = np.zeros_like(keep)
            keep[newest] = True
            DROPPED.inc(int(len(keep) - self.max_buffer_rows), detector=self.name)
        if not keep.all():
            self._buf = {k: v[keep] for k, v in buf.items()}

    # --- scoring -----------------------------------------------------------------------

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:
        if len(flows) == 0:
            return []
        frame = frame_of(flows)
        rows = self._candidates(frame)
        if len(rows) == 0:
            return []
        if self._dedupe is None:
            self._watermark, self._dedupe = {}, WindowDeduper(self.window_ms)
        self._append(frame, rows)
        self._expire(frame)
        touched = np.isin(self._buf["key"], np.unique(frame.src_key[rows]))
        sub = {k: v[touched] for k, v in self._buf.items()}
        return self._score(sub)

    def _score(self, sub: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        g = group(sub["key"])
        flows = g.count
        failed = np.bincount(g.inverse, weights=sub["failed"], minlength=len(g))
        ports = distinct_per_group(g, sub["port"])
        hosts = distinct_per_group(g, sub["dst_h"])
        pair = group(mix64(sub["key"], sub["service"]))
        pair_ok = np.bincount(pair.inverse, weights=~sub["failed"], minlength=len(pair)) > 0
        owner = g.inverse[pair.first]
        ok_services = np.bincount(owner, weights=pair_ok, minlength=len(g))
        services = np.bincount(owner, minlength=len(g))
        llr = ((services - ok_services) * math.log((1 - self.theta1) / (1 - self.theta0))
               + ok_services * math.log(self.theta1 / self.theta0))
        trw = np.where(services >= self.trw_min_services, llr / math.log(self.p_detect / self.p_false), 0.0)
        score = np.maximum.reduce([ports / self.min_ports, hosts / self.min_hosts, trw])
        ratio = failed / flows
        hits = np.flatnonzero((score >= 1.0) & (ratio >= self.min_failed_ratio))
        out = []
        for gi in hits:
            feats = {"flows": flows[gi], "failed": failed[gi], "failed_ratio": ratio[gi],
                     "distinct_ports": ports[gi], "distinct_hosts": hosts[gi],
                     "distinct_services": services[gi], "trw_llr": llr[gi]}
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
        target = ips_to_strings(sub["dst"][first:first + 1])[0] if feats["distinct_hosts"] == 1 else "many"
        ordered = mine[np.argsort(~sub["failed"][mine], kind="stable")]
        return make_alert(
            detector=self.name, technique=self.technique, institution_id=inst, entity=entity,
            entity_kind="src_ip", target=target, time_ms=time_ms,
            first_seen_ms=int(sub["t"][mine].min()), window_ms=self.window_ms,
            severity=min(4, severity_from_margin(score)), score=score,
            confidence=feats["failed_ratio"] * (1.0 - math.exp(-2.0 * score)),
            features=feats, flow_ids=sub["flow_id"][ordered[:10]])
