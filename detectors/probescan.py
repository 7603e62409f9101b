"""Scans that are not SYN handshakes, and slow scans of every kind (MITRE T1046).

:mod:`~finsa.detectors.portscan` counts SYNs that got no SYN-ACK. This detector keys on the other
probes a scanner sends, each a flow of at most ``max_probe_packets`` packets from the scanner:

* **stealth TCP probes**: a TCP flow whose client never sent SYN nor RST (NULL, FIN, Xmas =
  FIN+PSH+URG, ACK, Maimon = FIN+ACK, ...) answered by a RST or not at all (RSTs arriving
  unasked are backscatter of a spoofed SYN flood: :mod:`~finsa.detectors.floods.reflection`'s);
* **UDP probes**: a UDP flow to a unicast address that got no UDP answer (closed ports answer with
  an ICMP port unreachable, a separate flow, counted as corroboration);
* **IP protocol probes**: a flow of an IP protocol other than TCP, UDP, ICMP and ICMPv6 that got no
  answer (closed protocols answer with an ICMP protocol unreachable).

Per (institution, scanner), over a sliding window of flow time (``window_ms``, 60 s), it counts the
most distinct ports probed on one host (vertical), the most hosts probed on one port (horizontal)
and the most IP protocols probed on one host; a scanner alerts when one of them reaches
``min_ports`` / ``min_hosts`` / ``min_protocols`` and probes are at least ``min_probe_ratio`` of
its flows in the window (a monitoring server polling a thousand devices, twenty of them down,
sends 2 % probes and stays quiet).

Slow scans: every service (scanner, host, protocol, port) a source reached is remembered for
``slow_window_ms`` (1 h) with its outcome (any probe failing, SYNs without SYN-ACK included); a
scanner alerts when, in that time, ``slow_min_services`` services failed on one host (vertical),
or one port failed on that many hosts while it succeeded on at most ``slow_max_ok_ratio`` times as
many (horizontal: a peer-to-peer client reaching peers on random ports, or a busy client with some
dead destinations, stays quiet). Only a scan whose
failures spread over more than two windows is slow (a fast one is the window counts' to report).

entity = the scanner (entity_kind ``src_ip``), target = the scanned host, or ``many``; the
evidence names the kind of probe and the scanned host.

>>> from finsa.wire import FLOW
>>> n = 40
>>> fin = FLOW.make_batch({"src_ip": ["203.0.113.66"] * n, "dst_ip": ["10.1.0.5"] * n,
...     "dst_port": list(range(1, n + 1)), "protocol": [6] * n, "src2dst_tcp_flags": [1] * n,
...     "src2dst_packets": [1] * n, "dst2src_packets": [1] * n, "dst2src_tcp_flags": [20] * n,
...     "first_seen_ms": [1_000 + i for i in range(n)], "last_seen_ms": [1_000 + i for i in range(n)],
...     "institution_id": ["bank-a"] * n})
>>> [(a["entity"], a["target"], a["technique"]) for a in ProbeScanDetector().process(fin)]
[('203.0.113.66', '10.1.0.5', 'T1046')]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from finsa.detectors.base import Detector, WindowDeduper, make_alert, severity_from_margin
from finsa.detectors.features import (RST, SYN, FlowFrame, KeyedTable, distinct_per_group, group, isin_keys,
                                     mix64)
from finsa.detectors.netsets import NetworkSet
from finsa.detectors.state import KeyCounts, RowBuffer, unique
from finsa.wire import RecordBatch, ips_to_strings

__all__ = ["ProbeScanDetector", "probe_kinds"]

KINDS = {1: "tcp_stealth", 2: "udp", 3: "ip_protocol", 4: "tcp_syn"}
_NOT_UNICAST = NetworkSet(["224.0.0.0/4", "255.255.255.255/32", "0.0.0.0/32", "ff00::/8"])


def _as_float(keys: np.ndarray) -> np.ndarray:
    """uint64 keys as float64 values for a :class:`KeyedTable` column (only compared for equality;
    two keys alike in their top 53 bits collide, probability ~n^2 / 2^53)."""
    return keys.view(np.int64).astype(np.float64)


def _slow_most(sg, src_bits: np.ndarray, by: np.ndarray, failed: np.ndarray, ok: np.ndarray | None = None,
               max_ok_ratio: float = 0.0) -> np.ndarray:
    """Per source group ``sg``: the most failed entries under one ``by`` value (with ``ok``: only
    values where the successes are at most ``max_ok_ratio`` times the failures)."""
    pg = group(mix64(src_bits, by.view(np.uint64)))
    n_failed = np.bincount(pg.inverse, weights=failed, minlength=len(pg))
    if ok is not None:
        n_ok = np.bincount(pg.inverse, weights=ok, minlength=len(pg))
        n_failed = np.where(n_ok <= max_ok_ratio * n_failed, n_failed, 0.0)
    out = np.zeros(len(sg))
    np.maximum.at(out, sg.inverse[pg.first], n_failed)
    return out


def _most(g, sub: dict[str, np.ndarray], mask: np.ndarray, by: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per source group of ``g``: the most distinct ``values`` under one ``by`` value (rows in ``mask``)."""
    out = np.zeros(len(g))
    rows = np.flatnonzero(mask)
    if len(rows):
        sets = group(mix64(sub["key"][rows], by[rows]))
        np.maximum.at(out, g.inverse[rows][sets.first], distinct_per_group(sets, values[rows]))
    return out


def probe_kinds(frame: FlowFrame, max_packets: int) -> np.ndarray:
    """Per row: 0 (not a probe) or the probe kind code of :data:`KINDS` (SYN failures are 4)."""
    c = frame.cols
    proto, out_pk, back_pk = c["protocol"], c["src2dst_packets"], c["dst2src_packets"]
    small = out_pk <= max_packets
    unicast = ~_NOT_UNICAST.contains(c["dst_ip"])
    flags, back_flags = c["src2dst_tcp_flags"], c["dst2src_tcp_flags"]
    rst_or_none = (back_pk == 0) | (((back_flags & RST) != 0) & (back_pk <= max_packets))
    kind = np.zeros(frame.n, dtype=np.int64)
    # no SYN, and no RST either: a flow of RSTs is an answer (backscatter of spoofed SYNs), not a probe
    kind[frame.tcp & ((flags & (SYN | RST)) == 0) & small & rst_or_none & unicast] = 1
    response = (c["src_port"] < 1024) & (c["dst_port"] >= 1024)  # from a service port: an answer, not a probe
    kind[(proto == 17) & small & (back_pk == 0) & unicast & ~response] = 2
    other = ~np.isin(proto, (1, 6, 17, 58))
    kind[other & small & (back_pk == 0) & unicast] = 3
    kind[frame.failed & unicast] = 4
    return kind


class ProbeScanDetector(Detector):
    """Stealth TCP, UDP and IP-protocol scans in a window, and slow scans over a long window."""

    name = "probescan"
    technique = "T1046"

    def __init__(self, *, min_ports: int = 20, min_hosts: int = 20, min_protocols: int = 8,
                 min_probe_ratio: float = 0.5, max_probe_packets: int = 2,
                 slow_window_ms: int = 3_600_000, slow_min_services: int = 30, slow_max_ok_ratio: float = 1.0,
                 max_buffer_rows: int = 200_000, max_slow_entries: int = 500_000,
                 window_ms: int = 60_000, seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.min_ports, self.min_hosts, self.min_protocols = min_ports, min_hosts, min_protocols
        self.min_probe_ratio, self.max_probe_packets = min_probe_ratio, max_probe_packets
        self.slow_window_ms, self.slow_min_services = slow_window_ms, slow_min_services
        self.slow_max_ok_ratio = slow_max_ok_ratio
        self.max_buffer_rows, self.max_slow_entries = max_buffer_rows, max_slow_entries
        self._check(min_ports=(min_ports, 2, 65536), min_hosts=(min_hosts, 2, 1 << 24),
                    min_protocols=(min_protocols, 2, 256), min_probe_ratio=(min_probe_ratio, 0.0, 1.0),
                    max_probe_packets=(max_probe_packets, 1, 100),
                    slow_window_ms=(slow_window_ms, window_ms, 7 * 86_400_000),
                    slow_min_services=(slow_min_services, 2, 1e7), slow_max_ok_ratio=(slow_max_ok_ratio, 0.0, 1e6),
                    max_buffer_rows=(max_buffer_rows, 100, 1e8), max_slow_entries=(max_slow_entries, 100, 1e8))
        self._buf: RowBuffer | None = None
        self._flows: KeyedTable | None = None
        self._slow: KeyedTable | None = None
        self._dedupe: WindowDeduper | None = None
        self._slow_counts: dict[float, tuple[float, float]] = {}
        self._slow_failed: KeyCounts | None = None  # per source: its failed entries in ``_slow``
        self._probes: KeyCounts | None = None  # per source: its rows in ``_buf``

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:
        frame = self._frame(flows)
        if frame is None:
            return []
        if self._dedupe is None:
            self._dedupe, self._buf = WindowDeduper(self.window_ms), None
            self._flows = KeyedTable(("window", "flows"))
            self._slow = KeyedTable(("src", "host", "port", "t0", "t", "failed"))
            self._slow_failed = KeyCounts()
        kind = probe_kinds(frame, self.max_probe_packets)
        self._count_flows(frame)
        slow_hits = self._remember(frame, kind)
        rows = np.flatnonzero((kind > 0) & (kind < 4))
        out: list[dict[str, Any]] = []
        if len(rows):
            probes = self._append(frame, rows, kind[rows])
            keys = unique(frame.src_key[rows])
            # every count a source can alert on is at most its buffered probes: fewer are not scored
            keys = keys[probes.of(keys) >= self._min_probes()]
            if len(keys):
                out += self._score(keys)
        for key in slow_hits:
            alert = self._slow_alert(frame, kind, key)
            if alert is not None:
                out.append(alert)
        return out

    # --- fast window -------------------------------------------------------------------

    def _count_flows(self, frame: FlowFrame) -> None:
        assert self._flows is not None  # built by process() before
        window = frame.t_ms // self.window_ms
        g = frame.source_windows(self.window_ms)
        pos = self._flows.upsert(g.keys)
        self._flows.cols["window"][pos] = window[g.first]
        self._flows.cols["flows"][pos] += g.count
        stale = self._flows.cols["window"] < int(window.max()) - 2
        if stale.mean() > 0.5:
            self._flows.keep(~stale)

    def _append(self, frame: FlowFrame, rows: np.ndarray, kind: np.ndarray) -> KeyCounts:
        """Buffer the probes ``rows`` (of kinds ``kind``), drop what left the window; return the
        per-source counts of buffered probes."""
        c = frame.cols
        port = np.where(kind == 3, c["protocol"][rows].astype(np.int64) + 65536, c["dst_port"][rows].astype(np.int64))
        if not isinstance(self._buf, RowBuffer):  # None, or a state pickled as one dict of columns
            self._buf = RowBuffer.of(self._buf)
        buf = self._buf
        probes = getattr(self, "_probes", None)
        if probes is None:  # first batch, or a detector pickled before the counts
            self._probes = probes = KeyCounts()
            if len(buf):
                probes.add(buf.column("key"), 1.0)
        probes.add(frame.src_key[rows], 1.0)
        buf.append({"key": frame.src_key[rows], "inst": c["institution_id"][rows], "t": frame.t_ms[rows],
                    "end": frame.end_ms[rows], "dst_h": frame.dst_h[rows], "port": port, "kind": kind,
                    "flow_id": c["flow_id"][rows], "src": c["src_ip"][rows], "dst": c["dst_ip"][rows]})
        newest = int(frame.end_ms.max())
        t = buf.column("t")
        keep = t >= newest - self.window_ms
        if keep.sum() > self.max_buffer_rows:
            keep &= t >= np.partition(t, len(t) - self.max_buffer_rows)[len(t) - self.max_buffer_rows]
        if not keep.all():
            probes.add(buf.column("key")[~keep], -1.0)
            buf.keep(keep)
        return probes

    def _min_probes(self) -> int:
        """Fewest buffered probes of a source that can alert: its ports on one host, hosts on one
        port and protocols on one host are each at most its probes."""
        return min(self.min_ports, self.min_hosts, self.min_protocols)

    def _score(self, keys: np.ndarray) -> list[dict[str, Any]]:
        assert self._buf is not None and self._flows is not None  # built by process() before
        sub = self._buf.select(isin_keys(self._buf.column("key"), keys))
        g = group(sub["key"])
        is_proto = sub["kind"] == 3
        best = {"ports": _most(g, sub, ~is_proto, sub["dst_h"], sub["port"]),
                "protocols": _most(g, sub, is_proto, sub["dst_h"], sub["port"]),
                "hosts": _most(g, sub, ~is_proto, sub["port"].astype(np.uint64), sub["dst_h"])}
        flows = np.zeros(len(g))
        window = g.max(sub["t"]) // self.window_ms
        for back in (0, 1):
            pos, found = self._flows.lookup(mix64(g.keys, window - back))
            flows += np.where(found, self._flows.cols["flows"][pos], 0.0)
        ratio = g.count / np.maximum(flows, g.count)
        score = np.maximum.reduce([best["ports"] / self.min_ports, best["hosts"] / self.min_hosts,
                                   best["protocols"] / self.min_protocols])
        out = []
        for gi in np.flatnonzero((score >= 1.0) & (ratio >= self.min_probe_ratio)):
            mine = np.flatnonzero(g.inverse == gi)
            feats = {"probes": int(g.count[gi]), "flows": flows[gi], "probe_ratio": ratio[gi],
                     "max_ports_one_host": best["ports"][gi], "max_hosts_one_port": best["hosts"][gi],
                     "max_protocols_one_host": best["protocols"][gi],
                     "kinds": sorted({KINDS[int(k)] for k in sub["kind"][mine]})}
            alert = self._alert(sub, mine, float(score[gi]), feats)
            if alert is not None:
                out.append(alert)
        return out

    def _alert(self, sub: dict, mine: np.ndarray, score: float, feats: dict[str, Any]) -> dict[str, Any] | None:
        assert self._dedupe is not None  # built by process() before
        first = mine[0]
        inst = str(sub["inst"][first])
        entity = ips_to_strings(sub["src"][first:first + 1])[0]
        time_ms = int(sub["end"][mine].max())
        if not self._dedupe.first(inst, entity, time_ms):
            return None
        one_host = len(np.unique(sub["dst_h"][mine])) == 1
        target = ips_to_strings(sub["dst"][first:first + 1])[0] if one_host else "many"
        feats = {**feats, "scanner": entity, "scanned": target}
        return make_alert(
            detector=self.name, technique=self.technique, institution_id=inst, entity=entity,
            entity_kind="src_ip", target=target, time_ms=time_ms, first_seen_ms=int(sub["t"][mine].min()),
            window_ms=self.window_ms, severity=min(4, severity_from_margin(score)), score=score,
            confidence=feats["probe_ratio"] * (1.0 - math.exp(-2.0 * score)), features=feats,
            flow_ids=sub["flow_id"][mine[:10]])

    # --- slow scans --------------------------------------------------------------------

    def _remember(self, frame: FlowFrame, kind: np.ndarray) -> list[float]:
        """Record every (source, service) with its outcome; return sources past a slow threshold."""
        assert self._slow is not None  # built by process() before
        g = group(mix64(frame.src_key, frame.dst_service))
        pos = self._slow.upsert(g.keys, t0=np.inf)
        cols = self._slow.cols
        as_float = _as_float
        cols["t0"][pos] = np.minimum(cols["t0"][pos], g.min(frame.t_ms))
        cols["src"][pos] = as_float(frame.src_key[g.first])
        cols["host"][pos] = as_float(frame.dst_h[g.first])
        cols["port"][pos] = frame.cols["dst_port"][g.first]
        cols["t"][pos] = np.maximum(cols["t"][pos], g.max(frame.t_ms))
        was_failed = cols["failed"][pos]
        cols["failed"][pos] = np.where(g.sum((kind > 0).astype(np.float64)) > 0, 1.0, was_failed)
        self._count_failed(cols["src"][pos], cols["failed"][pos] - was_failed)
        now = float(frame.end_ms.max())
        live = cols["t"] >= now - self.slow_window_ms
        if len(self._slow) > self.max_slow_entries:
            live &= cols["t"] >= np.sort(cols["t"])[-self.max_slow_entries]
        if not live.all():
            self._count_failed(cols["src"][~live], -cols["failed"][~live])
            self._slow.keep(live)
            cols = self._slow.cols
        probing = unique(as_float(frame.src_key[kind > 0]))
        n_failed = self._failed_of(probing)
        # a source with fewer failed entries than the threshold has no host or port with that many
        mask = isin_keys(cols["src"], probing[n_failed >= self.slow_min_services])
        if not mask.any():
            return []
        rows = np.flatnonzero(mask)
        sub = {k: cols[k][rows] for k in ("src", "host", "port", "t0", "failed")}  # the columns read below
        failed = sub["failed"] > 0
        src_bits = sub["src"].view(np.uint64)
        sg = group(src_bits)
        # vertical: failed services on one host; horizontal: hosts failed on one port, mostly failing
        vertical = _slow_most(sg, src_bits, sub["host"], failed)
        horizontal = _slow_most(sg, src_bits, sub["port"], failed, ok=~failed, max_ok_ratio=self.slow_max_ok_ratio)
        oldest = np.full(len(sg), np.inf)
        np.minimum.at(oldest, sg.inverse, np.where(failed, sub["t0"], np.inf))
        hits = np.flatnonzero((np.maximum(vertical, horizontal) >= self.slow_min_services)
                              & (now - oldest >= 2 * self.window_ms))
        keys = sub["src"][sg.first[hits]]
        self._slow_counts = {float(k): (float(vertical[h]), float(horizontal[h])) for k, h in zip(keys, hits)}
        return sorted(self._slow_counts)

    def _failed_of(self, src: np.ndarray) -> np.ndarray:
        """Failed entries in the slow table of each source (``_as_float`` keys)."""
        counts = getattr(self, "_slow_failed", None)
        if counts is None:  # first use, or a detector pickled before the counts
            assert self._slow is not None  # built by process() before
            self._slow_failed = counts = KeyCounts()
            cols = self._slow.cols
            self._count_failed(cols["src"], cols["failed"])
        return counts.of(src.view(np.uint64))

    def _count_failed(self, src: np.ndarray, change: np.ndarray) -> None:
        """Add ``change`` (+1: an entry failed, -1: a failed entry dropped) to each source's count."""
        counts = getattr(self, "_slow_failed", None)
        if counts is None:
            return  # built from the table when first read
        rows = np.flatnonzero(change)
        counts.add(src[rows].view(np.uint64), change[rows])

    def _slow_alert(self, frame: FlowFrame, kind: np.ndarray, key: float) -> dict[str, Any] | None:
        assert self._dedupe is not None  # built by process() before
        rows = np.flatnonzero((frame.src_key.view(np.int64).astype(np.float64) == key) & (kind > 0))
        if not len(rows):
            return None
        r = rows[0]
        c = frame.cols
        inst = str(c["institution_id"][r])
        entity = ips_to_strings(c["src_ip"][r:r + 1])[0]
        time_ms = int(frame.end_ms[rows].max())
        if not self._dedupe.first(inst, entity, time_ms):
            return None
        vertical, horizontal = self._slow_counts[key]
        score = max(vertical, horizontal) / self.slow_min_services
        target = ips_to_strings(c["dst_ip"][r:r + 1])[0]
        feats = {"slow_failed_ports_one_host": vertical, "slow_failed_hosts_one_port": horizontal,
                 "slow_window_ms": self.slow_window_ms,
                 "scanner": entity, "last_probed": target,
                 "kinds": sorted({KINDS[int(k)] for k in kind[rows]})}
        return make_alert(
            detector=self.name, technique=self.technique, institution_id=inst, entity=entity,
            entity_kind="src_ip", target="many", time_ms=time_ms,
            first_seen_ms=int(frame.t_ms[rows].min()), window_ms=self.window_ms,
            severity=min(3, severity_from_margin(score)), score=score,
            confidence=1.0 - math.exp(-score), features=feats,
            flow_ids=c["flow_id"][rows[:10]])
