"""Data exfiltration (MITRE T1048): outbound volume over a host's own baseline, covert channels.

For each internal source host (RFC 1918 / ULA / link-local by default, or ``internal_networks``)
the detector sums, in tumbling bins of flow time (``bin_ms``, default 5 minutes), the bytes it
sent on three channels:

* ``bulk`` — to external destinations (``src2dst_bytes`` of flows it started);
* ``icmp`` — ICMP / ICMPv6 flows whose packets carry more than ``icmp_min_packet_bytes`` on
  average (ping sends 64-100 bytes; a tunnel fills packets), to any destination;
* ``dns`` — flows to port 53, to any destination (an internal resolver relays a DNS tunnel).

When a bin closes its total feeds an exponentially weighted mean and variance per (host, channel)
(a bin that alerted is learned clipped to its threshold, so exfiltration does not teach itself).
The open bin alerts once when its *sliding* total -- its own bytes plus the bin before it
weighted by the share of that bin still inside one ``bin_ms`` window ending at the batch's
newest flow -- reaches ``max(floor, mean + k_sigma * std, min_ratio * mean)``; floors:
``bulk_min_bytes``, ``icmp_min_bytes``, ``dns_min_bytes``. So a burst that straddles a bin
boundary is counted whole (tumbling bins alone split it in two, each under the floor); the bin
before counts only when it is adjacent and did not alert itself (a burst alerts once).
entity = the internal host (``src_ip``), target = its top destination in the batch or ``many``;
the evidence names the channel (``T1048.003`` for the covert ones, in ``channel_technique``).

>>> from finsa.wire import FLOW
>>> n = 40
>>> b = FLOW.make_batch({"src_ip": ["10.1.0.5"] * n, "dst_ip": ["203.0.113.200"] * n,
...     "dst_port": [443] * n, "protocol": [6] * n, "src2dst_packets": [4000] * n,
...     "src2dst_bytes": [5_000_000] * n, "first_seen_ms": [i * 1000 for i in range(1, n + 1)],
...     "last_seen_ms": [i * 1000 + 900 for i in range(1, n + 1)], "flow_id": list(range(n)),
...     "institution_id": ["bank-a"] * n})
>>> [(a["entity"], a["target"], a["technique"]) for a in ExfiltrationDetector().process(b)]
[('10.1.0.5', '203.0.113.200', 'T1048')]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from finsa.detectors.base import Detector, DetectorParamError, WindowDeduper, make_alert, severity_from_margin
from finsa.detectors.baseline import advance_bins, bound_keys
from finsa.detectors.features import FlowFrame, KeyedTable, group, mix64
from finsa.detectors.netsets import NetworkSet, PRIVATE_NETWORKS
from finsa.wire import RecordBatch, ips_to_strings

__all__ = ["ExfiltrationDetector", "CHANNELS"]

#: Channel name -> (code mixed into the state key, technique named in the evidence).
CHANNELS = {"bulk": (1, "T1048"), "icmp": (2, "T1048.003"), "dns": (3, "T1048.003")}
_COLUMNS = ("bin", "bytes", "mean", "var", "flagged", "prev_bytes")


class ExfiltrationDetector(Detector):
    """Per internal host and channel: bytes sent per bin against an EWMA baseline and a floor."""

    name = "exfiltration"
    technique = "T1048"

    def __init__(self, *, internal_networks: tuple[str, ...] = (), bin_ms: int = 300_000,
                 bulk_min_bytes: int = 100_000_000, icmp_min_bytes: int = 50_000,
                 dns_min_bytes: int = 2_000_000, icmp_min_packet_bytes: int = 300,
                 k_sigma: float = 6.0, min_ratio: float = 5.0, alpha: float = 0.05,
                 max_hosts: int = 500_000, window_ms: int = 600_000, seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.internal_networks = tuple(str(n) for n in internal_networks)
        self.bin_ms, self.bulk_min_bytes, self.icmp_min_bytes = bin_ms, bulk_min_bytes, icmp_min_bytes
        self.dns_min_bytes, self.icmp_min_packet_bytes = dns_min_bytes, icmp_min_packet_bytes
        self.k_sigma, self.min_ratio, self.alpha, self.max_hosts = k_sigma, min_ratio, alpha, max_hosts
        self._check(bin_ms=(bin_ms, 1_000, 86_400_000), bulk_min_bytes=(bulk_min_bytes, 1, 1e15),
                    icmp_min_bytes=(icmp_min_bytes, 1, 1e15), dns_min_bytes=(dns_min_bytes, 1, 1e15),
                    icmp_min_packet_bytes=(icmp_min_packet_bytes, 1, 65535), k_sigma=(k_sigma, 0.0, 100.0),
                    min_ratio=(min_ratio, 1.0, 1e6), alpha=(alpha, 1e-4, 1.0), max_hosts=(max_hosts, 10, 1e8))
        try:
            NetworkSet(self.internal_networks)
        except ValueError as exc:
            raise DetectorParamError(f"{self.name}.internal_networks: {exc}") from None
        self._internal: NetworkSet | None = None
        self._table: KeyedTable | None = None
        self._dedupe: WindowDeduper | None = None

    def _channels(self, frame: FlowFrame) -> dict[str, np.ndarray]:
        c = frame.cols
        src_in = self._internal.contains(c["src_ip"])
        dst_in = self._internal.contains(c["dst_ip"])
        pkt_bytes = c["src2dst_bytes"] / np.maximum(c["src2dst_packets"], 1)
        icmp = np.isin(c["protocol"], (1, 58))
        return {"bulk": src_in & ~dst_in, "icmp": src_in & icmp & (pkt_bytes >= self.icmp_min_packet_bytes),
                "dns": src_in & (c["dst_port"] == 53) & np.isin(c["protocol"], (6, 17))}

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:
        frame = self._frame(flows)
        if frame is None:
            return []
        if self._table is None:
            self._internal = NetworkSet(self.internal_networks or PRIVATE_NETWORKS)
            self._table, self._dedupe = KeyedTable(_COLUMNS), WindowDeduper(self.window_ms)
        out = []
        for channel, mask in self._channels(frame).items():
            rows = np.flatnonzero(mask)
            if len(rows):
                out += self._channel(frame, channel, rows)
        bound_keys(self._table, self.max_hosts)
        return out

    def _floor(self, channel: str) -> float:
        return float({"bulk": self.bulk_min_bytes, "icmp": self.icmp_min_bytes, "dns": self.dns_min_bytes}[channel])

    def _threshold(self, channel: str, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
        return np.maximum.reduce([np.full(len(mean), self._floor(channel)), mean + self.k_sigma * np.sqrt(var),
                                  self.min_ratio * mean])

    def _channel(self, frame: FlowFrame, channel: str, rows: np.ndarray) -> list[dict[str, Any]]:
        code = CHANNELS[channel][0]
        g = group(mix64(frame.src_key[rows], np.full(len(rows), code, dtype=np.uint64)))
        newest_ms = g.max(frame.t_ms[rows]).astype(np.float64)
        bins = np.floor_divide(newest_ms, self.bin_ms)
        moved, carried = self._previous_bin(g.keys, bins)
        pos = advance_bins(self._table, g.keys, bins, "bytes", self.alpha,
                           lambda mean, var: self._threshold(channel, mean, var))
        cols = self._table.cols
        cols["prev_bytes"][pos[moved]] = carried[moved]
        cols["bytes"][pos] += g.sum(frame.cols["src2dst_bytes"][rows].astype(np.float64))
        before_share = 1.0 - (newest_ms - bins * self.bin_ms) / self.bin_ms  # of the bin before, still in the window
        window = cols["bytes"][pos] + cols["prev_bytes"][pos] * before_share
        threshold = self._threshold(channel, cols["mean"][pos], cols["var"][pos])
        hits = np.flatnonzero((window >= threshold) & (cols["flagged"][pos] == 0))
        cols["flagged"][pos[hits]] = 1.0
        out = []
        for gi in hits:
            p = pos[gi]
            feats = {"channel": channel, "channel_technique": CHANNELS[channel][1],
                     "bytes_in_bin": cols["bytes"][p], "bytes_in_window": window[gi], "threshold_bytes": threshold[gi],
                     "baseline_mean_bytes": cols["mean"][p], "baseline_std_bytes": math.sqrt(cols["var"][p]),
                     "bin_ms": self.bin_ms}
            alert = self._alert(frame, rows[g.inverse == gi], feats, float(window[gi] / threshold[gi]))
            if alert is not None:
                out.append(alert)
        return out

    def _previous_bin(self, keys: np.ndarray, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Before ``keys`` move to ``bins``: which known keys leave their bin, and the
        ``prev_bytes`` each then carries (the bytes of the bin it leaves when that bin is the one
        just before and did not alert, else 0). New keys start with ``prev_bytes`` 0."""
        pos, found = self._table.lookup(keys)
        cols = self._table.cols
        old = np.where(found, cols["bin"][pos], np.inf) if len(cols["bin"]) else np.full(len(keys), np.inf)
        moved = bins > old
        if not moved.any():
            return moved, np.zeros(len(keys))
        adjacent = moved & (bins - old == 1) & (cols["flagged"][pos] == 0)
        return moved, np.where(adjacent, cols["bytes"][pos], 0.0)

    def _alert(self, frame: FlowFrame, mine: np.ndarray, feats: dict[str, Any], margin: float) -> dict[str, Any] | None:
        c = frame.cols
        claimed = self._dedupe.claim_source(frame, mine)
        if claimed is None:
            return None
        inst, entity, time_ms = claimed
        dg = group(frame.dst_h[mine])
        sent = dg.sum(c["src2dst_bytes"][mine].astype(np.float64))
        top = mine[dg.first[int(np.argmax(sent))]]
        share = float(sent.max() / max(sent.sum(), 1.0))
        feats.update(top_destination_share=share, distinct_destinations=len(dg))
        target = ips_to_strings(c["dst_ip"][top:top + 1])[0] if share >= 0.5 else "many"
        order = mine[np.argsort(-c["src2dst_bytes"][mine].astype(np.float64), kind="stable")]
        return make_alert(detector=self.name, technique=self.technique, institution_id=inst, entity=entity,
                          entity_kind="src_ip", target=target, time_ms=time_ms,
                          first_seen_ms=int(frame.t_ms[mine].min()), window_ms=self.window_ms,
                          severity=min(4, 1 + severity_from_margin(margin)), score=margin,
                          confidence=1.0 - math.exp(-2.0 * margin), features=feats, flow_ids=c["flow_id"][order[:10]])
