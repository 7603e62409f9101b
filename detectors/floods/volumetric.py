"""Volumetric floods against a victim, ICMP floods included (MITRE T1498.001).

Keys on the packets arriving at one address (institution, destination) that the address does
not answer in kind: every packet of ICMP flows (echo floods are answered, and still floods), and
the packets of other flows whose answer is at most ``oneway_ratio`` of them (a UDP junk flood, an
ACK or RST flood, spoofed traffic; a backup or a download is acknowledged and does not count).
A flow that lasted longer than a bin contributes the share of its packets that fell in its last
``bin_ms`` (uniform rate), so a long flow exported at its active timeout is read as a rate, not a
spike.

Per victim, tumbling bins of ``bin_ms`` (1 s) total those packets, their bytes and the distinct
sources; a closed bin feeds the victim's own baseline (EWMA mean and variance of packets per bin,
an alerting bin learned only up to its threshold). The open bin alerts once as soon as its packets
reach ``max(min_packets_per_s * bin, mean + k_sigma * std)`` with at least ``min_sources`` sources,
or ``single_source_packets_per_s`` from fewer, or ``icmp_packets_per_s`` of ICMP from any number
(a ping flood from one host; monitoring pings are a few per second): at flood rates within the
first second or two.
Busy servers learn their own level; a syslog collector or a video relay stays under its baseline.

entity = the victim (entity_kind ``dst_ip``), target = the victim; the evidence carries the
packet and byte rates, the sources, the ICMP share, the top sources and the baseline.

>>> from finsa.wire import FLOW
>>> n = 400
>>> flood = FLOW.make_batch({"src_ip": [f"198.51.{i // 200}.{i % 200}" for i in range(n)],
...     "dst_ip": ["10.1.0.80"] * n, "protocol": [1] * n, "src_port": [8] * n,
...     "src2dst_packets": [10] * n, "src2dst_bytes": [840] * n,
...     "first_seen_ms": [1_000 + i for i in range(n)], "last_seen_ms": [1_000 + i for i in range(n)],
...     "institution_id": ["bank-a"] * n})
>>> [(a["entity"], a["target"], a["technique"]) for a in VolumetricDetector().process(flood)]
[('10.1.0.80', '10.1.0.80', 'T1498.001')]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from finsa.detectors.base import Detector, WindowDeduper
from finsa.detectors.baseline import advance_bins, bound_keys
from finsa.detectors.features import FlowFrame, KeyedTable, group, mix64
from finsa.detectors.floods.victims import GROUP_ADDRESSES, SeenInBins, new_in_bin, top_sources, victim_alert
from finsa.wire import RecordBatch

__all__ = ["VolumetricDetector"]

_GROUPS = GROUP_ADDRESSES
_BINS = ("bin", "packets", "bytes", "sources", "icmp", "flagged", "mean", "var")


class VolumetricDetector(Detector):
    """Unanswered (or ICMP) packets per victim and second against the victim's own baseline."""

    name = "volumetric"
    technique = "T1498.001"

    def __init__(self, *, bin_ms: int = 1_000, min_packets_per_s: int = 2_000, min_sources: int = 20,
                 single_source_packets_per_s: int = 50_000, icmp_packets_per_s: int = 5_000,
                 oneway_ratio: float = 0.1, k_sigma: float = 6.0,
                 alpha: float = 0.05, max_victims: int = 200_000, window_ms: int = 60_000, seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.bin_ms, self.min_packets_per_s, self.min_sources = bin_ms, min_packets_per_s, min_sources
        self.single_source_packets_per_s, self.oneway_ratio = single_source_packets_per_s, oneway_ratio
        self.icmp_packets_per_s = icmp_packets_per_s
        self.k_sigma, self.alpha, self.max_victims = k_sigma, alpha, max_victims
        self._check(bin_ms=(bin_ms, 100, window_ms), min_packets_per_s=(min_packets_per_s, 1, 1e12),
                    min_sources=(min_sources, 1, 1e9),
                    single_source_packets_per_s=(single_source_packets_per_s, 1, 1e12),
                    icmp_packets_per_s=(icmp_packets_per_s, 1, 1e12),
                    oneway_ratio=(oneway_ratio, 0.0, 1.0), k_sigma=(k_sigma, 0.0, 100.0), alpha=(alpha, 1e-4, 1.0),
                    max_victims=(max_victims, 10, 1e8))
        self._table: KeyedTable | None = None
        self._seen: SeenInBins | None = None
        self._dedupe: WindowDeduper | None = None

    def _threshold(self, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
        return np.maximum(self.min_packets_per_s * self.bin_ms / 1000.0, mean + self.k_sigma * np.sqrt(var))

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:
        frame = self._frame(flows)
        if frame is None:
            return []
        c = frame.cols
        icmp = np.isin(c["protocol"], (1, 58))
        out_pk = c["src2dst_packets"].astype(np.float64)
        oneway = c["dst2src_packets"] <= self.oneway_ratio * out_pk
        rows = np.flatnonzero((icmp | oneway) & ~_GROUPS.contains(c["dst_ip"]))
        if not len(rows):
            return []
        if self._table is None:
            self._table, self._seen = KeyedTable(_BINS), SeenInBins()
            self._dedupe = WindowDeduper(self.window_ms)
        assert self._table is not None and self._seen is not None
        self._seen = SeenInBins.of(self._seen)  # a detector pickled with one table of every bin's
        share = np.minimum(1.0, self.bin_ms / np.maximum(frame.end_ms[rows] - frame.t_ms[rows], self.bin_ms))
        packets, nbytes = out_pk[rows] * share, c["src2dst_bytes"][rows] * share
        g = group(mix64(frame.inst_hash[rows], frame.dst_h[rows]))
        bins = g.max(frame.end_ms[rows] // self.bin_ms).astype(np.float64)
        pos = advance_bins(self._table, g.keys, bins, "packets", self.alpha, self._threshold,
                           reset=("bytes", "sources", "icmp"))
        cols = self._table.cols
        cols["packets"][pos] += g.sum(packets)
        cols["bytes"][pos] += g.sum(nbytes)
        cols["icmp"][pos] += g.sum(packets * icmp[rows])
        cols["sources"][pos] += new_in_bin(self._seen, g.keys, g.inverse, bins, frame.src_h[rows],
                                          4 * self.max_victims)
        threshold = self._threshold(cols["mean"][pos], cols["var"][pos])
        single = self.single_source_packets_per_s * self.bin_ms / 1000.0
        icmp_floor = self.icmp_packets_per_s * self.bin_ms / 1000.0
        big = (cols["packets"][pos] >= threshold) & ((cols["sources"][pos] >= self.min_sources)
                                                      | (cols["packets"][pos] >= np.maximum(single, threshold))
                                                      | (cols["icmp"][pos] >= np.maximum(icmp_floor, threshold)))
        hits = np.flatnonzero(big & (cols["flagged"][pos] == 0))
        cols["flagged"][pos[hits]] = 1.0
        out = []
        for gi in hits:
            state = {k: float(v[pos[gi]]) for k, v in cols.items()}
            alert = self._alert(frame, rows[g.inverse == gi], state, float(threshold[gi]))
            if alert is not None:
                out.append(alert)
        bound_keys(self._table, self.max_victims)
        return out

    def _alert(self, frame: FlowFrame, mine: np.ndarray, state: dict[str, float], threshold: float) -> dict[str, Any] | None:
        assert self._dedupe is not None  # built by process() before
        claimed = self._dedupe.claim_victim(frame, mine)
        if claimed is None:
            return None
        c = frame.cols
        per_s = 1000.0 / self.bin_ms
        margin = state["packets"] / max(threshold, 1.0)
        protocols, counts = np.unique(c["protocol"][mine], return_counts=True)
        feats = {"victim": claimed[1], "packets_per_s": state["packets"] * per_s, "bytes_per_s": state["bytes"] * per_s,
                 "sources_in_bin": state["sources"], "icmp_share": state["icmp"] / max(state["packets"], 1.0),
                 "threshold_packets_per_s": threshold * per_s, "baseline_packets_per_s": state["mean"] * per_s,
                 "bin_ms": self.bin_ms, "protocols": [int(p) for p in protocols[np.argsort(-counts)[:3]]],
                 "top_sources": top_sources(frame, mine)}
        return victim_alert(self, frame, mine, claimed, margin, feats)
