"""SYN floods and volumetric connection floods against a service (MITRE T1499.001).

Per (institution, destination host, protocol, port) the detector counts SYN-only flows (the
client sent SYN and never ACK: unanswered, or half-open because the source was spoofed) in
tumbling bins of flow time (``bin_ms``, default 10 s). When a bin closes, its count feeds an
exponentially weighted mean and variance of the service's baseline (a bin that alerted is learned
clipped to the threshold, so a flood barely moves the baseline, yet a service whose normal level
sits above ``min_syn_flows`` still learns it). The open bin alerts (once) as soon as its count
reaches ``max(min_syn_flows, mean + k_sigma * std)``; score and severity come from the bin's
count projected to a full bin over the threshold (a fast flood crosses early and scores high).

entity = the source when one source sent at least ``dominance`` of the SYNs of the batch that
fired (entity_kind ``src_ip``), else the victim address (entity_kind ``dst_ip``);
target = victim ``address:port``.

>>> from finsa.wire import FLOW
>>> n = 500
>>> flood = FLOW.make_batch({"src_ip": [f"198.51.100.{i % 200}" for i in range(n)],
...     "dst_ip": ["10.1.0.80"] * n, "dst_port": [443] * n, "src_port": list(range(1000, 1000 + n)),
...     "protocol": [6] * n, "src2dst_tcp_flags": [2] * n, "src2dst_packets": [1] * n,
...     "first_seen_ms": list(range(0, 5 * n, 5)), "last_seen_ms": list(range(0, 5 * n, 5)),
...     "institution_id": ["bank-a"] * n})
>>> [(a["entity"], a["target"], a["technique"]) for a in SynFloodDetector().process(flood)]
[('10.1.0.80', '10.1.0.80:443', 'T1499.001')]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from finsa.detectors.base import Detector, WindowDeduper, host_port, make_alert, severity_from_margin
from finsa.detectors.baseline import advance_bins, bound_keys
from finsa.detectors.features import FlowFrame, KeyedTable, group
from finsa.wire import RecordBatch, ips_to_strings

__all__ = ["SynFloodDetector"]

_COLUMNS = ("bin", "count", "mean", "var", "flagged")


class SynFloodDetector(Detector):
    """SYN-only flows per service and bin against a learned EWMA baseline."""

    name = "synflood"
    technique = "T1499.001"

    def __init__(self, *, bin_ms: int = 10_000, min_syn_flows: int = 100, k_sigma: float = 6.0,
                 alpha: float = 0.1, dominance: float = 0.5, max_services: int = 200_000,
                 window_ms: int = 60_000, seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.bin_ms, self.min_syn_flows, self.k_sigma = bin_ms, min_syn_flows, k_sigma
        self.alpha, self.dominance, self.max_services = alpha, dominance, max_services
        self._check(bin_ms=(bin_ms, 100, window_ms), min_syn_flows=(min_syn_flows, 1, 1e9),
                    k_sigma=(k_sigma, 0.0, 100.0), alpha=(alpha, 1e-4, 1.0),
                    dominance=(dominance, 0.0, 1.0), max_services=(max_services, 10, 1e8))
        self._table: KeyedTable | None = None
        self._dedupe: WindowDeduper | None = None

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:
        frame = self._frame(flows)
        if frame is None:
            return []
        rows = np.flatnonzero(frame.syn_only)
        if len(rows) == 0:
            return []
        if self._table is None:
            self._table, self._dedupe = KeyedTable(_COLUMNS), WindowDeduper(self.window_ms)
        g = group(frame.service_key[rows])
        bins = g.max(frame.t_ms[rows] // self.bin_ms).astype(np.float64)
        g_end = g.max(frame.t_ms[rows])
        pos = advance_bins(self._table, g.keys, bins, "count", self.alpha, self._threshold)
        cols = self._table.cols
        cols["count"][pos] += g.count
        threshold = self._threshold(cols["mean"][pos], cols["var"][pos])
        hits = np.flatnonzero((cols["count"][pos] >= threshold) & (cols["flagged"][pos] == 0))
        cols["flagged"][pos[hits]] = 1.0
        out = []
        for gi in hits:
            elapsed_ms = max(float(g_end[gi] - bins[gi] * self.bin_ms), 1_000.0)
            projected = float(cols["count"][pos[gi]]) * max(self.bin_ms / elapsed_ms, 1.0)
            alert = self._alert(frame, rows, g.inverse == gi, float(cols["count"][pos[gi]]),
                                float(threshold[gi]), float(cols["mean"][pos[gi]]), projected)
            if alert is not None:
                out.append(alert)
        bound_keys(self._table, self.max_services)
        return out

    def _threshold(self, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
        return np.maximum(self.min_syn_flows, mean + self.k_sigma * np.sqrt(var))

    def _alert(self, frame: FlowFrame, rows: np.ndarray, in_group: np.ndarray, count: float,
               threshold: float, baseline: float, projected: float) -> dict[str, Any] | None:
        mine = rows[in_group]
        first = mine[0]
        cols = frame.cols
        inst = str(cols["institution_id"][first])
        victim = ips_to_strings(cols["dst_ip"][first:first + 1])[0]
        target = host_port(victim, int(cols["dst_port"][first]))
        sg = group(frame.src_h[mine])
        top = int(np.argmax(sg.count))
        share = float(sg.count[top] / len(mine))
        if share >= self.dominance:
            top_row = mine[sg.first[top]]
            entity, kind = ips_to_strings(cols["src_ip"][top_row:top_row + 1])[0], "src_ip"
        else:
            entity, kind = victim, "dst_ip"
        time_ms = int(frame.end_ms[mine].max())
        if not self._dedupe.first(inst, entity, time_ms):
            return None
        margin = projected / threshold
        feats = {"syn_only_flows_in_bin": count, "projected_per_bin": projected,
                 "threshold": threshold, "baseline_mean": baseline,
                 "bin_ms": self.bin_ms, "distinct_sources_in_batch": len(sg),
                 "top_source_share": share}
        return make_alert(
            detector=self.name, technique=self.technique, institution_id=inst, entity=entity,
            entity_kind=kind, target=target, time_ms=time_ms,
            first_seen_ms=int(frame.t_ms[mine].min()), window_ms=self.window_ms,
            severity=severity_from_margin(margin), score=margin,
            confidence=1.0 - math.exp(-2.0 * margin), features=feats, flow_ids=cols["flow_id"][mine[:10]])
