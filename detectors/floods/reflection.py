"""Reflection and amplification floods against a victim (MITRE T1498.002).

Keys on *answers nobody asked for*, totalled per victim (institution, destination address):

* **UDP amplification**: a UDP flow from an amplifier service port (DNS 53, NTP 123, SNMP 161,
  SSDP 1900, CLDAP 389, memcached 11211, ISAKMP 500/4500, BACnet 47808, chargen 19, QOTD 17,
  portmap 111, NetBIOS 137, WS-Discovery 3702, mDNS 5353, RIP 520, ARD 3283, Ubiquiti 10001, CoAP
  5683, OpenVPN 1194, DVR 37810, Quake/Steam 27015, ...) to a unicast address that never sent a
  packet back in that flow, and whose port had not sent a request to a multicast or broadcast
  group on that service within ``request_memory_ms`` (an SSDP M-SEARCH or mDNS query legitimately
  draws unicast answers from every device);
* **TCP reflection**: a flow that is only SYN-ACKs, or only RSTs, with no packet back: the
  answers of servers to SYNs that carried the victim's spoofed address.

UDP answers are totalled in tumbling bins of ``bin_ms`` (2 s); a victim alerts, once per bin, as
soon as its open bin holds ``min_packets`` packets and ``min_bytes`` bytes from ``min_reflectors``
distinct reflectors and the bytes exceed the victim's own baseline (an EWMA of its closed bins
plus ``k_sigma`` standard deviations): at flood rates this is within the first two seconds. The
evidence carries the response/request byte ratio (answer bytes over the bytes the victim sent to
those services in the bin: infinite, reported as the answer bytes, when it sent none). TCP answers
are totalled over ``tcp_bin_ms`` (60 s, reflection is often slow) and alert at ``min_tcp_packets``.

entity = the victim (entity_kind ``dst_ip``), target = the victim; the evidence lists the top
reflectors and service ports.

>>> from finsa.wire import FLOW
>>> n = 300
>>> amp = FLOW.make_batch({"src_ip": [f"198.51.100.{i % 250}" for i in range(n)], "dst_ip": ["10.1.0.9"] * n,
...     "src_port": [123] * n, "dst_port": [80] * n, "protocol": [17] * n, "src2dst_packets": [1] * n,
...     "src2dst_bytes": [468] * n, "first_seen_ms": [1_000 + i for i in range(n)],
...     "last_seen_ms": [1_000 + i for i in range(n)], "institution_id": ["bank-a"] * n})
>>> [(a["entity"], a["target"], a["technique"]) for a in ReflectionDetector().process(amp)]
[('10.1.0.9', '10.1.0.9', 'T1498.002')]
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from finsa.detectors.base import Detector, DetectorParamError, WindowDeduper
from finsa.detectors.baseline import advance_bins, bound_keys
from finsa.detectors.features import ACK, RST, SYN, FlowFrame, KeyedTable, group, mix64
from finsa.detectors.floods.victims import GROUP_ADDRESSES, SeenInBins, new_in_bin, top_sources, victim_alert
from finsa.wire import RecordBatch

__all__ = ["ReflectionDetector", "AMPLIFIER_PORTS"]

#: UDP services abused as amplifiers (source port of the reflected answers).
AMPLIFIER_PORTS: tuple[int, ...] = (17, 19, 53, 69, 111, 123, 137, 161, 389, 500, 520, 1194, 1434, 1900,
                                    3283, 3702, 4500, 5351, 5353, 5683, 10001, 11211, 27015, 37810,
                                    47808)
_GROUPS = GROUP_ADDRESSES
_BINS = ("bin", "packets", "bytes", "reflectors", "flagged", "mean", "var")


class ReflectionDetector(Detector):
    """Unsolicited UDP answers from amplifier ports, and bare SYN-ACK/RST answers, per victim."""

    name = "reflection"
    technique = "T1498.002"

    def __init__(self, *, amplifier_ports: tuple[int, ...] = AMPLIFIER_PORTS, bin_ms: int = 2_000,
                 min_packets: int = 100, min_bytes: int = 50_000, min_reflectors: int = 20,
                 k_sigma: float = 6.0, alpha: float = 0.1, tcp_bin_ms: int = 60_000, min_tcp_packets: int = 10,
                 request_memory_ms: int = 60_000, max_victims: int = 200_000,
                 window_ms: int = 60_000, seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.amplifier_ports = tuple(int(p) for p in amplifier_ports)
        if not self.amplifier_ports or not all(0 < p < 65536 for p in self.amplifier_ports):
            raise DetectorParamError(f"{self.name}.amplifier_ports: need ports in 1..65535, got {amplifier_ports!r}")
        self.bin_ms, self.min_packets, self.min_bytes = bin_ms, min_packets, min_bytes
        self.min_reflectors, self.k_sigma, self.alpha = min_reflectors, k_sigma, alpha
        self.tcp_bin_ms, self.min_tcp_packets = tcp_bin_ms, min_tcp_packets
        self.request_memory_ms, self.max_victims = request_memory_ms, max_victims
        self._check(bin_ms=(bin_ms, 100, window_ms), min_packets=(min_packets, 1, 1e12),
                    min_bytes=(min_bytes, 0, 1e15), min_reflectors=(min_reflectors, 1, 1e9),
                    k_sigma=(k_sigma, 0.0, 100.0), alpha=(alpha, 1e-4, 1.0),
                    tcp_bin_ms=(tcp_bin_ms, 1_000, 3_600_000), min_tcp_packets=(min_tcp_packets, 1, 1e12),
                    request_memory_ms=(request_memory_ms, 0, 86_400_000), max_victims=(max_victims, 10, 1e8))
        self._udp: KeyedTable | None = None
        self._tcp: KeyedTable | None = None
        self._seen: SeenInBins | None = None
        self._asked: KeyedTable | None = None
        self._dedupe: WindowDeduper | None = None

    # --- which flows are answers nobody asked for --------------------------------------

    def _remember_requests(self, frame: FlowFrame) -> None:
        """Requests sent to a group address on an amplifier service: their answers are solicited."""
        assert self._asked is not None  # built by process() before
        c = frame.cols
        ask = np.flatnonzero((c["protocol"] == 17) & np.isin(c["dst_port"], self.amplifier_ports)
                             & _GROUPS.contains(c["dst_ip"]))
        if len(ask):
            key = mix64(frame.inst_hash[ask], frame.src_h[ask], c["src_port"][ask])
            pos = self._asked.upsert(key)
            self._asked.cols["t"][pos] = np.maximum(self._asked.cols["t"][pos], frame.end_ms[ask])
        if len(self._asked) > self.max_victims:
            t = self._asked.cols["t"]
            self._asked.keep(t >= float(frame.end_ms.max()) - self.request_memory_ms)

    def _udp_answers(self, frame: FlowFrame) -> np.ndarray:
        assert self._asked is not None  # built by process() before
        c = frame.cols
        rows = np.flatnonzero((c["protocol"] == 17) & np.isin(c["src_port"], self.amplifier_ports)
                              & (c["dst2src_packets"] == 0) & ~_GROUPS.contains(c["dst_ip"]))
        if len(rows) and len(self._asked):
            pos, found = self._asked.lookup(mix64(frame.inst_hash[rows], frame.dst_h[rows], c["dst_port"][rows]))
            asked = found & (self._asked.cols["t"][pos] >= frame.t_ms[rows] - self.request_memory_ms)
            rows = rows[~asked]
        return rows

    @staticmethod
    def _tcp_answers(frame: FlowFrame) -> np.ndarray:
        f = frame.cols["src2dst_tcp_flags"]
        bare = (f == (SYN | ACK)) | (f == RST) | (f == (RST | ACK))
        return np.flatnonzero(frame.tcp & bare & (frame.cols["dst2src_packets"] == 0))

    # --- per-victim bins ---------------------------------------------------------------

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:
        frame = self._frame(flows)
        if frame is None:
            return []
        if self._dedupe is None:
            self._udp, self._tcp = KeyedTable(_BINS), KeyedTable(_BINS)
            self._seen, self._asked = SeenInBins(), KeyedTable(("t",))
            self._dedupe = WindowDeduper(self.window_ms)
        assert self._udp is not None and self._tcp is not None
        self._remember_requests(frame)
        out = self._kind(frame, self._udp_answers(frame), self._udp, self.bin_ms, "udp")
        out += self._kind(frame, self._tcp_answers(frame), self._tcp, self.tcp_bin_ms, "tcp")
        return out

    def _kind(self, frame: FlowFrame, rows: np.ndarray, table: KeyedTable, bin_ms: int,
              kind: str) -> list[dict[str, Any]]:
        assert self._seen is not None  # built by process() before
        self._seen = SeenInBins.of(self._seen)  # a detector pickled with one table of every bin's
        if not len(rows):
            return []
        c = frame.cols
        victim = mix64(frame.inst_hash[rows], frame.dst_h[rows], np.full(len(rows), 6 if kind == "tcp" else 17))
        g = group(victim)
        bins = g.max(frame.t_ms[rows] // bin_ms).astype(np.float64)
        pos = advance_bins(table, g.keys, bins, "packets", self.alpha, self._threshold_for(kind),
                           reset=("bytes", "reflectors"))
        cols = table.cols
        cols["packets"][pos] += g.sum(c["src2dst_packets"][rows].astype(np.float64))
        cols["bytes"][pos] += g.sum(c["src2dst_bytes"][rows].astype(np.float64))
        cols["reflectors"][pos] += new_in_bin(self._seen, g.keys, g.inverse, bins, frame.src_h[rows],
                                              4 * self.max_victims)
        if kind == "udp":
            need = ((cols["packets"][pos] >= self._threshold_for(kind)(cols["mean"][pos], cols["var"][pos]))
                    & (cols["bytes"][pos] >= self.min_bytes) & (cols["reflectors"][pos] >= self.min_reflectors))
        else:
            need = cols["packets"][pos] >= self._threshold_for(kind)(cols["mean"][pos], cols["var"][pos])
        hits = np.flatnonzero(need & (cols["flagged"][pos] == 0))
        cols["flagged"][pos[hits]] = 1.0
        out = []
        for gi in hits:
            alert = self._alert(frame, rows[g.inverse == gi], kind, {k: float(v[pos[gi]]) for k, v in cols.items()})
            if alert is not None:
                out.append(alert)
        bound_keys(table, self.max_victims)
        return out

    def _threshold_for(self, kind: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """The per-bin packet threshold of ``kind`` ("udp" or "tcp"): its floor or the baseline's."""
        floor = self.min_packets if kind == "udp" else self.min_tcp_packets
        return lambda mean, var: np.maximum(floor, mean + self.k_sigma * np.sqrt(var))

    def _alert(self, frame: FlowFrame, mine: np.ndarray, kind: str, state: dict[str, float]) -> dict[str, Any] | None:
        assert self._dedupe is not None  # built by process() before
        claimed = self._dedupe.claim_victim(frame, mine, scope=kind)
        if claimed is None:
            return None
        ports, counts = np.unique(frame.cols["src_port"][mine], return_counts=True)
        asked = self._request_bytes(frame, mine[0], ports)
        threshold = float(self._threshold_for(kind)(np.array([state["mean"]]), np.array([state["var"]]))[0])
        margin = state["packets"] / max(threshold, 1.0)
        feats = {"kind": kind, "victim": claimed[1], "packets_in_bin": state["packets"], "bytes_in_bin": state["bytes"],
                 "reflectors_in_bin": state["reflectors"], "threshold_packets": threshold,
                 "baseline_mean_packets": state["mean"], "bin_ms": self.bin_ms if kind == "udp" else self.tcp_bin_ms,
                 "service_ports": [int(p) for p in ports[np.argsort(-counts)[:5]]],
                 "response_request_byte_ratio": state["bytes"] / asked if asked else state["bytes"],
                 "request_bytes": asked, "top_reflectors": top_sources(frame, mine)}
        return victim_alert(self, frame, mine, claimed, margin, feats)

    @staticmethod
    def _request_bytes(frame: FlowFrame, row: int, ports: np.ndarray) -> float:
        """Bytes the victim sent to those service ports in this batch (its own requests)."""
        c = frame.cols
        mine = (frame.src_h == frame.dst_h[row]) & np.isin(c["dst_port"], ports) & (c["protocol"] == c["protocol"][row])
        return float(c["src2dst_bytes"][mine].sum())
