"""Command-and-control beaconing (MITRE T1071): connections repeated at a steady rhythm.

Per (institution, source, destination, protocol, destination port) the detector keeps the start
times and client byte counts of the last ``ring`` connections (a fixed-width ring per pair, so
state is bounded: at most ``max_pairs`` pairs, the least recently seen dropped first). Within the
last ``window_ms`` of flow time (default one hour) a pair beacons when it has at least
``min_beacons`` connections whose inter-arrival times are steady — robust coefficient of
variation ``1.4826 * MAD / median`` at most ``max_cv``, and at least ``min_steady_share`` of the
intervals within ``1.5 * max_cv`` of the median: this tolerates random jitter (about +/-25 % by
default) and a few missed or extra beats, while random arrivals rarely pass both. Below
``2 * min_beacons`` beats every interval must be in that band: a few visits of one workstation to
a popular site (browsing, a CDN, an update check at random times) do, by chance, line up into seven
steady gaps out of eight among the many pairs of a large network, and the missed-beat allowance
is what lets them through; a beacon with few beats has missed none of them. With a median
interval between ``min_interval_ms`` and
``max_interval_ms``, and client byte counts alike (coefficient of variation at most
``max_size_cv``). A record that continues a connection cut by the meter's active timeout (same
TCP source port as the pair's previous record) is not a new beat.

By default only internal sources talking to external destinations count (``outbound_only``),
and NTP (123) is allow-listed: periodic by design. Reconnects to a port that is no common service
(``common_ports``) count whatever the direction, from ``min_reconnects`` beats (a RAT dialling its
controller every few seconds; ``min_reconnect_interval_ms`` upwards). Multicast, broadcast and
link-local destinations (SSDP, mDNS, LLMNR, NetBIOS, DHCP) never count. Other legitimate periodic traffic (update
checks, telemetry, monitoring) can be allow-listed by port or destination network.
entity = the source (``src_ip``), target = ``destination:port``; one alert per source and window.

>>> from finsa.wire import FLOW
>>> n = 12
>>> b = FLOW.make_batch({"src_ip": ["10.1.0.5"] * n, "dst_ip": ["203.0.113.50"] * n,
...     "dst_port": [443] * n, "src_port": list(range(50000, 50000 + n)), "protocol": [6] * n,
...     "src2dst_bytes": [900] * n, "first_seen_ms": [60_000 * i + 7 * (i % 3) for i in range(n)],
...     "last_seen_ms": [60_000 * i + 300 for i in range(n)], "flow_id": list(range(n)),
...     "institution_id": ["bank-a"] * n})
>>> [(a["entity"], a["target"], a["technique"]) for a in BeaconingDetector().process(b)]
[('10.1.0.5', '203.0.113.50:443', 'T1071')]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from finsa.detectors.base import Detector, DetectorParamError, WindowDeduper, make_alert, service_of
from finsa.detectors.features import FlowFrame, group, mix64
from finsa.detectors.netsets import NetworkSet, PRIVATE_NETWORKS
from finsa.detectors.state import merge_sorted
from finsa.wire import RecordBatch

__all__ = ["BeaconingDetector", "ReconnectDetector"]

#: Destinations that are never beacons: multicast, IPv4 limited broadcast, link-local.
_NEVER = ("224.0.0.0/4", "255.255.255.255/32", "169.254.0.0/16", "ff00::/8", "fe80::/10")
#: Ports of common services: reconnects elsewhere count from ``min_reconnects``.
_COMMON_PORTS = (20, 21, 22, 25, 53, 67, 68, 80, 88, 110, 123, 137, 138, 139, 143, 161, 389, 443, 445, 465,
                 514, 587, 636, 853, 993, 995, 1900, 3389, 4949, 5353, 5355, 5666, 8080, 8443, 9100, 9182,
                 10050)  # the last few: monitoring agents (munin, NRPE, node/windows exporter, zabbix)


class BeaconingDetector(Detector):
    """Steady inter-arrival times and alike sizes of one source's connections to one service."""

    name = "beaconing"
    technique = "T1071"
    _RECONNECT = False

    def __init__(self, *, min_beacons: int = 8, max_cv: float = 0.25, min_steady_share: float = 0.75,
                 max_size_cv: float = 0.5,
                 min_interval_ms: int = 10_000, max_interval_ms: int = 1_800_000, ring: int = 32,
                 outbound_only: bool = True, internal_networks: tuple[str, ...] = (),
                 allow_ports: tuple[int, ...] = (123,), allow_destinations: tuple[str, ...] = (),
                 min_reconnects: int = 5, min_reconnect_interval_ms: int = 2_000, max_fanout: int = 3,
                 common_ports: tuple[int, ...] = _COMMON_PORTS,
                 max_pairs: int = 100_000, window_ms: int = 3_600_000, seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.min_beacons, self.max_cv, self.max_size_cv = min_beacons, max_cv, max_size_cv
        self.min_steady_share = min_steady_share
        self.min_interval_ms, self.max_interval_ms, self.ring = min_interval_ms, max_interval_ms, ring
        self.outbound_only, self.max_pairs = bool(outbound_only), max_pairs
        self.internal_networks, self.allow_destinations = tuple(internal_networks), tuple(allow_destinations)
        self.allow_ports = tuple(int(p) for p in allow_ports)
        self.min_reconnects, self.min_reconnect_interval_ms = min_reconnects, min_reconnect_interval_ms
        self.max_fanout = max_fanout
        self.common_ports = tuple(int(p) for p in common_ports)
        self._check(min_beacons=(min_beacons, 3, 1024), max_cv=(max_cv, 0.0, 10.0),
                    min_steady_share=(min_steady_share, 0.0, 1.0),
                    max_size_cv=(max_size_cv, 0.0, 100.0), min_interval_ms=(min_interval_ms, 1, 86_400_000),
                    max_interval_ms=(max_interval_ms, min_interval_ms, 86_400_000), ring=(ring, min_beacons, 1024),
                    max_pairs=(max_pairs, 10, 1e8), min_reconnects=(min_reconnects, 3, min_beacons),
                    min_reconnect_interval_ms=(min_reconnect_interval_ms, 1, 86_400_000),
                    max_fanout=(max_fanout, 2, 8))
        try:
            NetworkSet(self.internal_networks), NetworkSet(self.allow_destinations)
        except ValueError as exc:
            raise DetectorParamError(f"{self.name}: bad network: {exc}") from None
        self._state: dict[str, np.ndarray] | None = None
        self._nets: tuple[NetworkSet, NetworkSet, NetworkSet] | None = None
        self._dedupe: WindowDeduper | None = None
        self._fanout: dict[int, set[int]] | None = None

    # --- state -------------------------------------------------------------------------

    def _init_state(self) -> None:
        self._state = {"keys": np.zeros(0, dtype=np.uint64), "times": np.zeros((0, self.ring), np.int64), "sizes": np.zeros((0, self.ring)),
                       "count": np.zeros(0, np.int64), "last_port": np.zeros(0, np.int64),
                       "last_ms": np.zeros(0, np.int64)}
        self._nets = (NetworkSet(self.internal_networks or PRIVATE_NETWORKS), NetworkSet(self.allow_destinations),
                      NetworkSet(_NEVER))
        self._dedupe = WindowDeduper(self.window_ms)
        self._fanout = {}

    def _positions(self, keys: np.ndarray) -> np.ndarray:
        """Positions of the unique sorted ``keys`` in the state, inserting the missing ones."""
        st = self._state
        pos = np.searchsorted(st["keys"], keys)
        found = np.zeros(len(keys), dtype=bool)
        if len(st["keys"]):
            found = (pos < len(st["keys"])) & (st["keys"][np.minimum(pos, len(st["keys"]) - 1)] == keys)
        if not found.all():
            new = keys[~found]
            fill = {"keys": new, "times": np.full((len(new), self.ring), -1, np.int64),
                    "sizes": np.zeros((len(new), self.ring)), "count": np.zeros(len(new), np.int64),
                    "last_port": np.full(len(new), -1, np.int64), "last_ms": np.zeros(len(new), np.int64)}
            self._state = st = merge_sorted(st, fill)
            pos = np.searchsorted(st["keys"], keys)
        return pos

    def _evict(self) -> None:
        keep_n = int(self.max_pairs * 0.9)
        keep = np.sort(np.argsort(self._state["last_ms"], kind="stable")[-keep_n:])
        self._state = {k: v[keep] for k, v in self._state.items()}

    # --- batches -----------------------------------------------------------------------

    def _rows(self, frame: FlowFrame) -> np.ndarray:
        c = frame.cols
        internal, allowed, never = self._nets  # type: ignore[misc]  # built with the state, before the first batch
        ok = np.isin(c["protocol"], (6, 17)) & ~np.isin(c["dst_port"], self.allow_ports)
        v4 = np.all(c["dst_ip"][:, 10:12] == 255, axis=1)
        ok &= ~never.contains(c["dst_ip"]) & ~(v4 & (c["dst_ip"][:, 15] == 255))  # and subnet broadcasts
        if self._RECONNECT:  # connections made (SYN answered, client ACKed), not probes or reflected SYN-ACKs
            made = ((c["src2dst_tcp_flags"] & 0x12) == 0x12) & (c["dst2src_packets"] > 0) & ~frame.failed
            ok &= ~np.isin(c["dst_port"], self.common_ports) & (c["dst_port"] > 0) & (c["protocol"] == 6) & made
        elif self.outbound_only:
            ok &= internal.contains(c["src_ip"]) & ~internal.contains(c["dst_ip"])
        if len(allowed):
            ok &= ~allowed.contains(c["dst_ip"])
        return np.flatnonzero(ok)

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:
        frame = self._frame(flows)
        if frame is None:
            return []
        if self._state is None:
            self._init_state()
        rows = self._rows(frame)
        if not len(rows):
            return []
        c = frame.cols
        if self._RECONNECT:
            self._learn_fanout(frame, rows)
        pair = mix64(frame.src_key, frame.dst_service)[rows]
        order = np.lexsort((frame.t_ms[rows], pair))
        rows, pair = rows[order], pair[order]
        g = group(pair)
        pos = self._positions(g.keys)
        st = self._state
        port = c["src_port"][rows].astype(np.int64)
        start = np.r_[True, pair[1:] != pair[:-1]]
        prev_port = np.where(start, st["last_port"][pos[g.inverse]], np.r_[-1, port[:-1]])
        beat = ~((port == prev_port) & (c["protocol"][rows] == 6))
        st["last_port"][pos] = port[np.r_[np.flatnonzero(start)[1:] - 1, len(rows) - 1]]
        st["last_ms"][pos] = np.maximum(st["last_ms"][pos], g.max(frame.t_ms[rows]))
        rank = np.cumsum(beat) - 1
        first_rank = rank[np.flatnonzero(start)] + 1 - beat[np.flatnonzero(start)]
        rank = rank - first_rank[g.inverse]
        n_beats = np.bincount(g.inverse, weights=beat, minlength=len(g)).astype(np.int64)
        put = beat & (rank >= n_beats[g.inverse] - self.ring)
        slot = (st["count"][pos[g.inverse]] + rank) % self.ring
        st["times"][pos[g.inverse][put], slot[put]] = frame.t_ms[rows][put]
        st["sizes"][pos[g.inverse][put], slot[put]] = c["src2dst_bytes"][rows][put]
        st["count"][pos] += n_beats
        out = self._evaluate(frame, rows, g, pos)
        if len(self._state["keys"]) > self.max_pairs:
            self._evict()
        return out

    def _poller_key(self, frame: FlowFrame, rows: np.ndarray) -> np.ndarray:
        return mix64(frame.src_key[rows], frame.cols["dst_port"][rows])

    def _learn_fanout(self, frame: FlowFrame, rows: np.ndarray) -> None:
        """Remember, per (source, port), a few distinct destinations: a poller reaches many."""
        keys, dsts = self._poller_key(frame, rows), frame.dst_h[rows]
        pairs = np.unique(np.stack([keys, dsts], axis=1), axis=0)
        for k, d in pairs.tolist():
            got = self._fanout.setdefault(k, set())
            if len(got) < 8:
                got.add(d)
        if len(self._fanout) > self.max_pairs:
            self._fanout = dict(list(self._fanout.items())[len(self._fanout) // 2:])

    def _evaluate(self, frame: FlowFrame, rows: np.ndarray, g: Any, pos: np.ndarray) -> list[dict[str, Any]]:
        st = self._state
        needed = np.full(len(g), self.min_reconnects if self._RECONNECT else self.min_beacons)
        floor = np.full(len(g), self.min_reconnect_interval_ms if self._RECONNECT else self.min_interval_ms)
        cand = np.flatnonzero(st["count"][pos] >= needed)
        if self._RECONNECT and len(cand):  # a monitoring poller reaching several hosts on the port is no RAT
            keys = self._poller_key(frame, rows[g.first[cand]]).tolist()
            cand = cand[np.array([len(self._fanout.get(k, ())) < self.max_fanout for k in keys]).astype(bool)]
        if not len(cand):
            return []
        times = st["times"][pos[cand]].astype(np.float64)
        newest = times.max(axis=1, keepdims=True)
        valid = (times >= 0) & (times >= newest - self.window_ms)
        t_sorted = np.sort(np.where(valid, times, np.inf), axis=1)
        with np.errstate(invalid="ignore"):
            gaps = np.diff(t_sorted, axis=1)
        gaps[~np.isfinite(gaps)] = np.nan
        n_gaps = np.sum(~np.isnan(gaps), axis=1)
        ok = n_gaps >= needed[cand] - 1
        if not ok.any():
            return []
        cand, gaps, valid = cand[ok], gaps[ok], valid[ok]
        floor = floor[cand]
        median = np.nanmedian(gaps, axis=1)
        mad = np.nanmedian(np.abs(gaps - median[:, None]), axis=1)
        cv = 1.4826 * mad / np.maximum(median, 1.0)
        sizes = np.where(valid, st["sizes"][pos[cand]], np.nan)
        size_mean = np.nanmean(sizes, axis=1)
        size_cv = np.nanstd(sizes, axis=1) / np.maximum(size_mean, 1.0)
        in_band = np.abs(gaps - median[:, None]) <= 1.5 * self.max_cv * median[:, None]
        steady_share = np.sum(in_band, axis=1) / n_gaps[ok]
        reconnect = self._RECONNECT
        few = (n_gaps[ok] + 1) < 2 * self.min_beacons  # few beats: no missed beat allowed (chance alignments)
        alike = (steady_share >= np.where(few, 1.0, self.min_steady_share)) & (size_cv <= self.max_size_cv)
        # a reconnecting RAT carries commands in some sessions: enough steady gaps suffice, sizes may differ
        steady = (np.sum(in_band, axis=1) >= self.min_reconnects - 1) if reconnect else alike
        hit = (cv <= self.max_cv) & steady & (median >= floor) & (median <= self.max_interval_ms)
        out = []
        for j in np.flatnonzero(hit):
            gi = cand[j]
            feats = {"beats": int(n_gaps[ok][j] + 1), "median_interval_ms": median[j], "interval_robust_cv": cv[j],
                     "steady_share": steady_share[j],
                     "client_bytes_mean": size_mean[j], "client_bytes_cv": size_cv[j]}
            alert = self._alert(frame, rows[g.inverse == gi], feats, float(n_gaps[ok][j] + 1) * (1.0 - cv[j] / max(self.max_cv, 1e-9) / 2))
            if alert is not None:
                out.append(alert)
        return out

    def _alert(self, frame: FlowFrame, mine: np.ndarray, feats: dict[str, Any], score: float) -> dict[str, Any] | None:
        c, first = frame.cols, mine[0]
        claimed = self._dedupe.claim_source(frame, mine)
        if claimed is None:
            return None
        inst, entity, time_ms = claimed
        steady = 1.0 - feats["interval_robust_cv"] / max(self.max_cv, 1e-9)
        return make_alert(detector=self.name, technique=self.technique, institution_id=inst, entity=entity,
                          entity_kind="src_ip", target=service_of(frame, first),
                          time_ms=time_ms, first_seen_ms=int(frame.t_ms[mine].min()), window_ms=self.window_ms,
                          severity=3 + int(feats["beats"] >= 2 * self.min_beacons and steady >= 0.5), score=score,
                          confidence=min(1.0, (0.5 + 0.5 * steady) * (1 - math.exp(-feats["beats"] / self.min_beacons))),
                          features=feats, flow_ids=c["flow_id"][mine[:10]])


class ReconnectDetector(BeaconingDetector):
    """A host re-dialling one service on a port that is no common service at a steady rhythm
    (MITRE T1571, non-standard port): a RAT or reverse shell reconnecting to its controller.

    Any direction counts (controllers sit inside networks too); TCP only; from ``min_reconnects``
    beats at least ``min_reconnect_interval_ms`` apart whose gaps are steady (``max_cv``), with
    at least ``min_reconnects - 1`` gaps near the median; sizes may differ (sessions carry
    commands). A source reaching ``max_fanout`` or more hosts on the same port is a poller
    (monitoring, scraping), not a RAT. Multicast, broadcast and link-local destinations never count.
    """

    name = "reconnect"
    technique = "T1571"
    _RECONNECT = True
