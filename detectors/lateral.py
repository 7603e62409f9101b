"""Lateral movement over remote services (MITRE T1021; SMB service creation T1021.002 / T1569.002).

Only internal-to-internal TCP flows to administration ports count (SSH 22, RPC 135, SMB 445,
RDP 3389, WinRM 5985/5986 by default; "internal" is RFC 1918 / ULA / link-local or
``internal_networks``). Per (institution, source) and tumbling window of flow time (default
10 minutes) the detector counts distinct destination hosts for three findings:

* ``admin_fanout`` — hosts touched on admin ports (attempts included): at ``fanout_hosts``;
* ``new_admin_pairs`` — hosts reached (answered) over a (source, host, port) never seen before,
  on a service that fewer than ``popular_sources`` sources have used (a shared file server or
  jump host is not news), once the institution's learning period (``learn_ms`` of flow time from
  its first flow) is over: at ``min_new_pairs``. Pairs seen are remembered (at most
  ``max_pairs``, least recent dropped);
* ``smb_remote_service`` — hosts where a failed or short SMB connection (client bytes at most
  ``smb_short_bytes``: a probe, a refused login) was followed by an SMB session that uploaded at
  least ``smb_bulk_bytes`` (PsExec-style: copy a service binary, then start it): at
  ``smb_min_hosts``.

One alert per source and window, for the findings that fired; score = the largest count over its
threshold; severity 4 for SMB remote services, else 3. entity = the source (``src_ip``),
target = the only destination or ``many``. ``allow_sources`` (jump hosts, management servers)
are skipped.

>>> from finsa.wire import FLOW
>>> n = 12
>>> b = FLOW.make_batch({"src_ip": ["10.1.0.66"] * n, "dst_ip": [f"10.1.2.{i}" for i in range(n)],
...     "dst_port": [445] * n, "protocol": [6] * n, "src2dst_tcp_flags": [27] * n,
...     "dst2src_tcp_flags": [27] * n, "src2dst_packets": [9] * n, "dst2src_packets": [8] * n,
...     "src2dst_bytes": [1500] * n, "first_seen_ms": [1_000 * i + 1 for i in range(n)],
...     "last_seen_ms": [1_000 * i + 500 for i in range(n)], "flow_id": list(range(n)),
...     "institution_id": ["bank-a"] * n})
>>> [(a["entity"], a["target"], a["technique"]) for a in LateralMovementDetector().process(b)]
[('10.1.0.66', 'many', 'T1021')]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from finsa.detectors.base import Detector, DetectorParamError, WindowDeduper, make_alert
from finsa.detectors.features import FlowFrame, KeyedTable, group, mix64
from finsa.detectors.state import unique_first
from finsa.detectors.netsets import NetworkSet, PRIVATE_NETWORKS
from finsa.wire import RecordBatch, ips_from_strings, ips_to_strings

__all__ = ["LateralMovementDetector"]

_WIN_COLS = ("window", "fanout", "new_pairs", "smb_hosts")
_FINDINGS = ("admin_fanout", "new_admin_pairs", "smb_remote_service")


class LateralMovementDetector(Detector):
    """Internal sources reaching many or new internal hosts on administration ports."""

    name = "lateral"
    technique = "T1021"

    def __init__(self, *, admin_ports: tuple[int, ...] = (22, 135, 445, 3389, 5985, 5986),
                 internal_networks: tuple[str, ...] = (), allow_sources: tuple[str, ...] = (),
                 learn_ms: int = 86_400_000, fanout_hosts: int = 10, min_new_pairs: int = 3, popular_sources: int = 5,
                 smb_min_hosts: int = 3, smb_short_bytes: int = 3_000, smb_bulk_bytes: int = 50_000,
                 max_pairs: int = 1_000_000, window_ms: int = 600_000, seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.admin_ports = tuple(int(p) for p in admin_ports)
        self.internal_networks, self.allow_sources = tuple(internal_networks), tuple(allow_sources)
        self.learn_ms, self.fanout_hosts, self.min_new_pairs = learn_ms, fanout_hosts, min_new_pairs
        self.smb_min_hosts, self.smb_short_bytes, self.smb_bulk_bytes = smb_min_hosts, smb_short_bytes, smb_bulk_bytes
        self.max_pairs, self.popular_sources = max_pairs, popular_sources
        if not self.admin_ports or not all(0 < p < 65536 for p in self.admin_ports):
            raise DetectorParamError(f"{self.name}.admin_ports: need ports in 1..65535, got {admin_ports!r}")
        self._check(learn_ms=(learn_ms, 0, 365 * 86_400_000), fanout_hosts=(fanout_hosts, 2, 1e9),
                    min_new_pairs=(min_new_pairs, 1, 1e9), popular_sources=(popular_sources, 1, 1e9), smb_min_hosts=(smb_min_hosts, 1, 1e9),
                    smb_short_bytes=(smb_short_bytes, 0, 1e12), smb_bulk_bytes=(smb_bulk_bytes, 1, 1e12),
                    max_pairs=(max_pairs, 100, 1e9))
        try:
            NetworkSet(self.internal_networks)
            ips_from_strings(list(self.allow_sources))
        except ValueError as exc:
            raise DetectorParamError(f"{self.name}: bad address or network: {exc}") from None
        self._internal: NetworkSet | None = None
        self._start: dict[int, int] | None = None
        self._known: KeyedTable | None = None
        self._services: KeyedTable | None = None
        self._windows: KeyedTable | None = None
        self._seen: KeyedTable | None = None
        self._smb: KeyedTable | None = None
        self._dedupe: WindowDeduper | None = None

    def _init_state(self) -> None:
        self._internal = NetworkSet(self.internal_networks or PRIVATE_NETWORKS)
        self._start, self._known, self._services = {}, KeyedTable(("last",)), KeyedTable(("sources",))
        self._windows, self._seen = KeyedTable(_WIN_COLS), KeyedTable(("window",))
        self._smb, self._dedupe = KeyedTable(("window", "short_ms")), WindowDeduper(self.window_ms)

    def _rows(self, frame: FlowFrame) -> np.ndarray:
        c = frame.cols
        ok = frame.tcp & np.isin(c["dst_port"], self.admin_ports)
        ok &= self._internal.contains(c["src_ip"]) & self._internal.contains(c["dst_ip"])
        if self.allow_sources:
            ok &= ~NetworkSet(self.allow_sources).contains(c["src_ip"])
        return np.flatnonzero(ok)

    def _distinct(self, key: np.ndarray, window: np.ndarray, dst_h: np.ndarray, kind: int,
                  mask: np.ndarray) -> np.ndarray:
        """Mask of rows (within ``mask``) bringing a (source, window, host) not yet counted for ``kind``."""
        k = mix64(key, dst_h, np.full(len(key), kind, dtype=np.uint64))
        _, found = self._seen.lookup(k)
        first = unique_first(np.where(mask, k, np.uint64(0)))[1]
        new = np.zeros(len(k), dtype=bool)
        new[first] = True
        new &= mask & ~found
        pos = self._seen.upsert(k[new])
        self._seen.cols["window"][pos] = window[new]
        return new

    def _new_pairs(self, frame: FlowFrame, rows: np.ndarray, answered: np.ndarray) -> np.ndarray:
        """Answered rows over a never-seen (source, host, port), to a service few sources use, after
        the learning period; every pair and service use is learned."""
        c = frame.cols
        for h in np.unique(frame.inst_hash[rows]).tolist():
            self._start.setdefault(h, int(frame.t_ms[rows][frame.inst_hash[rows] == h].min()))
        start = np.array([self._start[h] for h in frame.inst_hash[rows].tolist()], dtype=np.int64)
        service = mix64(frame.inst_hash[rows], frame.dst_h[rows], c["dst_port"][rows])
        pair = mix64(frame.src_key[rows], service)
        _, known = self._known.lookup(pair)
        order = np.lexsort((frame.t_ms[rows], pair, ~answered))  # earliest answered row of each pair first
        lead = order[np.r_[True, pair[order][1:] != pair[order][:-1]]]
        earliest = np.zeros(len(rows), dtype=bool)
        earliest[lead] = True
        unseen = answered & ~known & earliest
        spos, sfound = self._services.lookup(service)
        users = np.where(sfound, self._services.cols["sources"][spos], 0.0) if len(self._services) else np.zeros(len(rows))
        new = unseen & (users < self.popular_sources) & (frame.t_ms[rows] >= start + self.learn_ms)
        if unseen.any():
            g = group(service[unseen])
            spos = self._services.upsert(g.keys)
            self._services.cols["sources"][spos] += g.count
        pos = self._known.upsert(pair[answered])
        self._known.cols["last"][pos] = frame.t_ms[rows][answered]
        if len(self._known) > self.max_pairs:
            cut = np.sort(self._known.cols["last"])[len(self._known) - self.max_pairs]
            self._known.keep(self._known.cols["last"] > cut)
        if len(self._services) > self.max_pairs:
            self._services.keep(self._services.cols["sources"] >= np.median(self._services.cols["sources"]))
        return new

    def _smb_service(self, frame: FlowFrame, rows: np.ndarray, key: np.ndarray, window: np.ndarray) -> np.ndarray:
        """SMB rows uploading a lot to a host that saw a failed or short SMB flow from the source."""
        c = frame.cols
        smb = c["dst_port"][rows] == 445
        sent = c["src2dst_bytes"][rows]
        short = smb & (frame.failed[rows] | (sent <= self.smb_short_bytes))
        bulk = smb & (sent >= self.smb_bulk_bytes)
        hk = mix64(key, frame.dst_h[rows])
        if short.any():
            g = group(hk[short])
            pos = self._smb.upsert(g.keys, short_ms=np.inf)
            self._smb.cols["short_ms"][pos] = np.minimum(self._smb.cols["short_ms"][pos], g.min(frame.t_ms[rows][short]))
            self._smb.cols["window"][pos] = window[short][g.first]
        if not len(self._smb):
            return np.zeros(len(rows), dtype=bool)
        pos, found = self._smb.lookup(hk)
        return bulk & found & (self._smb.cols["short_ms"][pos] <= frame.t_ms[rows])

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:
        frame = self._frame(flows)
        if frame is None:
            return []
        if self._start is None:
            self._init_state()
        rows = self._rows(frame)
        if not len(rows):
            return []
        c = frame.cols
        window = frame.t_ms[rows] // self.window_ms
        key = mix64(frame.src_key[rows], window)
        answered = (c["dst2src_packets"][rows] > 0) & ~frame.failed[rows]
        dst_h = frame.dst_h[rows]
        counts = {"fanout": self._distinct(key, window, dst_h, 1, np.ones(len(rows), bool)),
                  "new_pairs": self._distinct(key, window, dst_h, 2, self._new_pairs(frame, rows, answered)),
                  "smb_hosts": self._distinct(key, window, dst_h, 3, self._smb_service(frame, rows, key, window))}
        g = group(key)
        pos = self._windows.upsert(g.keys)
        t = self._windows.cols
        t["window"][pos] = window[g.first]
        for name, new in counts.items():
            t[name][pos] += g.sum(new.astype(np.float64))
        out = self._evaluate(frame, rows, g, pos, counts)
        self._prune(int(window.max()))
        return out

    def _evaluate(self, frame: FlowFrame, rows: np.ndarray, g: Any, pos: np.ndarray,
                  counts: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        t = {k: v[pos] for k, v in self._windows.cols.items()}
        ratios = np.column_stack([t["fanout"] / self.fanout_hosts, t["new_pairs"] / self.min_new_pairs,
                                  t["smb_hosts"] / self.smb_min_hosts])
        out = []
        for gi in np.flatnonzero(ratios.max(axis=1) >= 1.0):
            in_group = g.inverse == gi
            flagged = in_group & (counts["new_pairs"] | counts["smb_hosts"])
            mine = rows[flagged] if flagged.any() else rows[in_group]
            findings = [f for f, r in zip(_FINDINGS, ratios[gi]) if r >= 1.0]
            feats = {"findings": findings, "admin_hosts": t["fanout"][gi], "new_admin_hosts": t["new_pairs"][gi],
                     "smb_service_hosts": t["smb_hosts"][gi],
                     "ports": sorted({int(p) for p in frame.cols["dst_port"][rows[in_group]]}),
                     "subtechnique": "T1021.002/T1569.002" if "smb_remote_service" in findings else ""}
            alert = self._alert(frame, mine, rows[in_group], feats, float(ratios[gi].max()))
            if alert is not None:
                out.append(alert)
        return out

    def _alert(self, frame: FlowFrame, mine: np.ndarray, group_rows: np.ndarray, feats: dict[str, Any],
               score: float) -> dict[str, Any] | None:
        c, first = frame.cols, mine[0]
        claimed = self._dedupe.claim_source(frame, mine, group_rows)
        if claimed is None:
            return None
        inst, entity, time_ms = claimed
        one = len(np.unique(frame.dst_h[group_rows])) == 1 and feats["admin_hosts"] <= 1
        target = ips_to_strings(c["dst_ip"][first:first + 1])[0] if one else "many"
        smb = "smb_remote_service" in feats["findings"]
        return make_alert(detector=self.name, technique=self.technique, institution_id=inst, entity=entity,
                          entity_kind="src_ip", target=target, time_ms=time_ms,
                          first_seen_ms=int(frame.t_ms[group_rows].min()), window_ms=self.window_ms,
                          severity=4 if smb else 3, score=score, confidence=min(1.0, 0.5 + 0.15 * score + 0.2 * smb),
                          features=feats, flow_ids=c["flow_id"][mine[:10]])

    def _prune(self, newest: int) -> None:
        for table in (self._windows, self._seen, self._smb):
            if len(table):
                stale = table.cols["window"] < newest - 1
                if stale.mean() > 0.5:
                    table.keep(~stale)
