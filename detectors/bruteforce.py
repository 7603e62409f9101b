"""Login brute force against SSH, RDP, SMB and web logins (MITRE T1110).

Per (institution, source, destination, service port) the detector sums, in tumbling windows of
flow time, the short answered TCP connections (handshake completed, at most ``max_duration_ms``)
and their client-to-server byte counts. Evaluated over the current and the previous window, a
pair alerts when it has made at least ``min_attempts`` connections (``web_min_attempts`` on the
web ports, where polling clients are common) whose client byte counts are small
(mean <= ``max_mean_bytes``) and alike (coefficient of variation <= ``max_cv``): the signature of
one tool repeating the same login exchange.

entity = the attacker (entity_kind ``src_ip``), target = ``server:port``.

>>> from finsa.wire import FLOW
>>> n = 30
>>> ssh = FLOW.make_batch({"src_ip": ["203.0.113.66"] * n, "dst_ip": ["10.1.0.22"] * n,
...     "dst_port": [22] * n, "src_port": list(range(40000, 40000 + n)), "protocol": [6] * n,
...     "src2dst_tcp_flags": [27] * n, "dst2src_tcp_flags": [27] * n,
...     "src2dst_packets": [12] * n, "dst2src_packets": [10] * n,
...     "src2dst_bytes": [2100 + i % 3 for i in range(n)], "dst2src_bytes": [3000] * n,
...     "first_seen_ms": [i * 2000 for i in range(n)], "last_seen_ms": [i * 2000 + 1500 for i in range(n)],
...     "institution_id": ["bank-a"] * n})
>>> [(a["entity"], a["target"], a["technique"]) for a in BruteForceDetector().process(ssh)]
[('203.0.113.66', '10.1.0.22:22', 'T1110')]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from finsa.detectors.base import Detector, DetectorParamError, WindowDeduper, make_alert, service_of, severity_from_margin
from finsa.detectors.features import ACK, FlowFrame, KeyedTable, group, mix64
from finsa.wire import RecordBatch

__all__ = ["BruteForceDetector"]

_COLUMNS = ("inst", "window", "count", "bytes_sum", "bytes_sumsq")


class BruteForceDetector(Detector):
    """Many short, alike, answered connections from one source to one login service."""

    name = "bruteforce"
    technique = "T1110"

    def __init__(self, *, ports: tuple[int, ...] = (22, 3389, 445, 80, 443, 8080),
                 web_ports: tuple[int, ...] = (80, 443, 8080), min_attempts: int = 15,
                 web_min_attempts: int = 50, max_cv: float = 0.3, max_mean_bytes: int = 20_000,
                 max_duration_ms: int = 30_000, window_ms: int = 60_000, seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.ports, self.web_ports = tuple(int(p) for p in ports), tuple(int(p) for p in web_ports)
        self.min_attempts, self.web_min_attempts = min_attempts, web_min_attempts
        self.max_cv, self.max_mean_bytes, self.max_duration_ms = max_cv, max_mean_bytes, max_duration_ms
        if not self.ports or not all(0 < p < 65536 for p in self.ports + self.web_ports):
            raise DetectorParamError(f"{self.name}.ports: need ports in 1..65535, got {ports!r}")
        self._check(min_attempts=(min_attempts, 2, 1e6), web_min_attempts=(web_min_attempts, 2, 1e6),
                    max_cv=(max_cv, 0.0, 10.0), max_mean_bytes=(max_mean_bytes, 1, 1e9),
                    max_duration_ms=(max_duration_ms, 1, 3_600_000))
        self._table: KeyedTable | None = None
        self._institutions: dict[str, int] | None = None
        self._dedupe: WindowDeduper | None = None

    def _rows(self, frame: FlowFrame) -> np.ndarray:
        c = frame.cols
        ok = (frame.tcp & np.isin(c["dst_port"], self.ports) & (c["dst2src_packets"] > 0)
              & ((c["src2dst_tcp_flags"] & ACK) != 0)
              & (frame.end_ms - frame.t_ms <= self.max_duration_ms))
        return np.flatnonzero(ok)

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:
        frame = self._frame(flows)
        if frame is None:
            return []
        rows = self._rows(frame)
        if len(rows) == 0:
            return []
        if self._table is None:
            self._table, self._institutions = KeyedTable(_COLUMNS), {}
            self._dedupe = WindowDeduper(self.window_ms)
        pair = mix64(frame.src_key, frame.dst_service)[rows]
        window = frame.t_ms[rows] // self.window_ms
        inst_idx = np.array([self._institutions.setdefault(n, len(self._institutions))
                             for n in frame.inst_names], dtype=np.float64)[frame.inst_code[rows]]
        g = group(mix64(pair, window))
        pos = self._table.upsert(g.keys)
        cols = self._table.cols
        b = frame.cols["src2dst_bytes"][rows].astype(np.float64)
        cols["inst"][pos], cols["window"][pos] = inst_idx[g.first], window[g.first]
        cols["count"][pos] += g.count
        cols["bytes_sum"][pos] += g.sum(b)
        cols["bytes_sumsq"][pos] += g.sum(b * b)
        out = self._evaluate(frame, rows, pair, window)
        self._prune()
        return out

    def _evaluate(self, frame: FlowFrame, rows: np.ndarray, pair: np.ndarray,
                  window: np.ndarray) -> list[dict[str, Any]]:
        pg = group(pair)
        latest = pg.max(window)
        sums = np.zeros((len(pg), 3))
        for back in (0, 1):
            pos, found = self._table.lookup(mix64(pg.keys, latest - back))
            for j, name in enumerate(("count", "bytes_sum", "bytes_sumsq")):
                sums[:, j] += np.where(found, self._table.cols[name][pos], 0.0)
        count, bsum, bsq = sums[:, 0], sums[:, 1], sums[:, 2]
        mean = bsum / np.maximum(count, 1)
        cv = np.sqrt(np.maximum(bsq / np.maximum(count, 1) - mean * mean, 0.0)) / np.maximum(mean, 1.0)
        port = frame.cols["dst_port"][rows][pg.first]
        need = np.where(np.isin(port, self.web_ports), self.web_min_attempts, self.min_attempts)
        hits = np.flatnonzero((count >= need) & (cv <= self.max_cv) & (mean <= self.max_mean_bytes))
        out = []
        for gi in hits:
            feats = {"attempts": count[gi], "client_bytes_mean": mean[gi], "client_bytes_cv": cv[gi],
                     "min_attempts": need[gi]}
            alert = self._alert(frame, rows[pg.inverse == gi], feats, count[gi] / need[gi])
            if alert is not None:
                out.append(alert)
        return out

    def _alert(self, frame: FlowFrame, mine: np.ndarray, feats: dict[str, Any],
               margin: float) -> dict[str, Any] | None:
        cols, first = frame.cols, mine[0]
        claimed = self._dedupe.claim_source(frame, mine)
        if claimed is None:
            return None
        inst, entity, time_ms = claimed
        target = service_of(frame, first)
        alike = 1.0 - feats["client_bytes_cv"] / max(self.max_cv, 1e-9) / 2
        return make_alert(
            detector=self.name, technique=self.technique, institution_id=inst, entity=entity,
            entity_kind="src_ip", target=target, time_ms=time_ms,
            first_seen_ms=int(frame.t_ms[mine].min()), window_ms=self.window_ms,
            severity=min(4, 1 + severity_from_margin(margin)), score=margin,
            confidence=alike * (1.0 - math.exp(-2.0 * margin)), features=feats,
            flow_ids=cols["flow_id"][mine[:10]])

    def _prune(self) -> None:
        """Drop the windows older than the previous one, per institution."""
        cols = self._table.cols
        newest = np.zeros(len(self._institutions))
        np.maximum.at(newest, cols["inst"].astype(np.int64), cols["window"])
        keep = cols["window"] >= newest[cols["inst"].astype(np.int64)] - 1
        if not keep.all():
            self._table.keep(keep)
