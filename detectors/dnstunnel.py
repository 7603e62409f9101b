"""DNS tunnelling (MITRE T1071.004) and algorithmically generated domains (T1568.002).

Both read the DNS hints of flows (``dns_query``, ``dns_qtype``, ``dns_rcode``); name features
come from :mod:`finsa.detectors.dnsnames`, once per distinct name. State is kept per tumbling
window of flow time (default 5 minutes) in :class:`~finsa.detectors.features.KeyedTable` rows,
and at most one alert per (institution, client) and window.

:class:`DnsTunnelDetector` — per (institution, client, registered domain): queries (client
packets), client bytes, distinct names, names that look encoded (a label of ``min_label``
characters or a subdomain of ``min_sub_len``, with character entropy of at least
``min_entropy`` bits) and tunnel-friendly query types (TXT, NULL, MX, PRIVATE). It alerts when
the volume — ``max(queries / min_queries, bytes / min_client_bytes, names / min_names)`` —
reaches 1, at least ``min_share`` of the flows carry encoded names or such query types, and the
client asked at least ``min_volume_names`` distinct names: a tunnel carries its data in the names,
so it keeps asking new ones (a resolver would answer a repeated name from its cache), while a
mail server's SPF/DKIM/DMARC TXT look-ups or a monitor's TXT poll repeat a handful.
One long flow carrying a whole dnscat session counts through its packets and bytes.
entity = the client (``src_ip``), target = the registered domain (the resolver's address when
the name has no valid TLD). ``allow_domains`` (reputation look-ups, reverse DNS) are skipped.

:class:`DgaDetector` — per (institution, client): distinct registered domains whose second-level
label scores DGA-like (:func:`~finsa.detectors.dnsnames.dga_score` >= 0.5) and distinct names
answered NXDOMAIN. It alerts at ``min_dga_domains`` DGA-like domains with ``min_nxdomain``
NXDOMAIN names, or three times as many DGA-like domains whatever the answers (responses may be
missing). entity = the client, target = ``many`` or the only domain.

>>> from finsa.wire import FLOW
>>> n = 120
>>> names = [f"{i:04x}" + "3f9a0c1b7e5d2468" * 3 + ".t.evil.example" for i in range(n)]
>>> tunnel = FLOW.make_batch({"src_ip": ["10.1.0.9"] * n, "dst_ip": ["10.1.0.53"] * n,
...     "dst_port": [53] * n, "protocol": [17] * n, "src2dst_packets": [1] * n,
...     "src2dst_bytes": [140] * n, "dns_query": names, "dns_qtype": [16] * n,
...     "first_seen_ms": [1_000 * i + 1 for i in range(n)], "last_seen_ms": [1_000 * i + 2 for i in range(n)],
...     "flow_id": list(range(1, n + 1)), "institution_id": ["bank-a"] * n})
>>> [(a["entity"], a["target"], a["technique"]) for a in DnsTunnelDetector().process(tunnel)]
[('10.1.0.9', 'evil.example', 'T1071.004')]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from finsa.detectors.base import Detector, WindowDeduper, make_alert, severity_from_margin
from finsa.detectors.dnsnames import BAD_TLD, NameFeatures, string_hash
from finsa.detectors.features import FlowFrame, KeyedTable, group, mix64
from finsa.detectors.state import unique_first
from finsa.wire import RecordBatch, ips_to_strings, split_list

__all__ = ["DnsTunnelDetector", "DgaDetector", "TUNNEL_QTYPES", "questions"]

#: Query types tunnels favour for their payload: CNAME, NULL, MX, TXT, PRIVATE (iodine).
TUNNEL_QTYPES = (5, 10, 15, 16, 65399)
#: Query types no ordinary client asks for: NULL and the private type iodine uses.
RAW_QTYPES = (10, 65399)
_ALLOW = ("in-addr.arpa", "ip6.arpa", "sophosxl.net", "mcafee.com", "spamhaus.org", "spamcop.net",
          "barracudacentral.org", "e5.sk")


def questions(cols: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every DNS question of a flow batch: (flow row, name, qtype) per question.

    A flow's ``dns_queries`` list (FLOW v2) holds all its questions when it has several; else its
    ``dns_query``/``dns_qtype`` is the only one.

    >>> from finsa.wire import FLOW
    >>> b = FLOW.make_batch({"dns_query": ["a.example", "b.example", ""], "dns_qtype": [1, 16, 0],
    ...                      "dns_queries": ["", "b.example/16\\nc.example/10", ""]})
    >>> [(int(r), str(n), int(q)) for r, n, q in zip(*questions(b.columns))]
    [(0, 'a.example', 1), (1, 'b.example', 16), (1, 'c.example', 10)]
    """
    lists = cols["dns_queries"]
    multi = lists != ""
    single = np.flatnonzero((cols["dns_query"] != "") & ~multi)
    rows, names, qtypes = [single], [cols["dns_query"][single]], [cols["dns_qtype"][single].astype(np.int64)]
    extra_rows, extra_names, extra_types = [], [], []
    for row, text in zip(np.flatnonzero(multi).tolist(), lists[multi].tolist()):
        for item in split_list(text):
            name, _, qtype = item.rpartition("/")
            if name:
                extra_rows.append(row)
                extra_names.append(name)
                extra_types.append(int(qtype) if qtype.isdigit() else 0)
    if extra_rows:
        rows.append(np.array(extra_rows, dtype=np.int64))
        names.append(np.array(extra_names, dtype=object))
        qtypes.append(np.array(extra_types, dtype=np.int64))
    order = np.argsort(np.concatenate(rows), kind="stable")
    return np.concatenate(rows)[order], np.concatenate(names)[order], np.concatenate(qtypes)[order]


def _new_keys(seen: KeyedTable, keys: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Mask of rows whose key was never seen (first occurrence only); remembers them."""
    _, found = seen.lookup(keys)
    first = unique_first(keys)[1]
    new = np.zeros(len(keys), dtype=bool)
    new[first] = True
    new &= ~found
    pos = seen.upsert(keys[new])
    seen.cols["window"][pos] = window[new]
    return new


def _prune(table: KeyedTable, newest_window: int, max_rows: int) -> None:
    """Drop rows older than the previous window once they are most of the table, or past the bound."""
    if not len(table):
        return
    stale = table.cols["window"] < newest_window - 1
    if stale.mean() > 0.5:
        table.keep(~stale)
    if len(table) > max_rows:
        cut = np.sort(table.cols["window"])[len(table) - max_rows]
        table.keep(table.cols["window"] > cut)


class _DnsDetector(Detector):
    """Shared plumbing: the DNS rows of a batch and their name features; per-key state in
    ``_table`` (columns ``_COLUMNS``) and the (key, window) pairs already seen in ``_seen``."""

    _COLUMNS: tuple[str, ...] = ()

    def __init__(self, *, allow_domains: tuple[str, ...], max_rows: int, window_ms: int, seed: int) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.allow_domains = tuple(str(d).lower().strip(".") for d in allow_domains)
        self.max_rows = max_rows
        self._check(max_rows=(max_rows, 100, 1e8))
        self._names: NameFeatures | None = None
        self._dedupe: WindowDeduper | None = None
        self._table: KeyedTable | None = None
        self._seen: KeyedTable | None = None

    def _dns_rows(self, frame: FlowFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One entry per DNS question: the flow row it came from and its name features; ``qtype``
        and ``weight`` (the flow's client packets shared among its questions) are in the features."""
        if self._names is None:
            self._names, self._dedupe = NameFeatures(), WindowDeduper(self.window_ms)
            self._table, self._seen = KeyedTable(self._COLUMNS), KeyedTable(("window",))
        rows, names, qtypes = questions(frame.cols)
        feats = self._names.columns(names)
        per_flow = np.bincount(rows, minlength=frame.n)[rows] if len(rows) else np.zeros(0)
        feats["qtype"] = qtypes
        feats["weight"] = np.maximum(frame.cols["src2dst_packets"][rows], 1) / np.maximum(per_flow, 1)
        if self.allow_domains and len(rows):
            dom = feats["domain"].astype(str)
            allowed = np.isin(dom, self.allow_domains)
            for suffix in self.allow_domains:
                allowed |= np.char.endswith(dom, "." + suffix)
            rows, feats = rows[~allowed], {k: (v if k == "names" else v[~allowed]) for k, v in feats.items()}
        return rows, feats

    def _emit(self, frame: FlowFrame, mine: np.ndarray, target: str, score: float, confidence: float,
              feats: dict[str, Any], severity: int) -> dict[str, Any] | None:
        cols = frame.cols
        claimed = self._dedupe.claim_source(frame, mine)
        if claimed is None:
            return None
        inst, entity, time_ms = claimed
        return make_alert(detector=self.name, technique=self.technique, institution_id=inst,
                          entity=entity, entity_kind="src_ip", target=target, time_ms=time_ms,
                          first_seen_ms=int(frame.t_ms[mine].min()), window_ms=self.window_ms,
                          severity=severity, score=score, confidence=confidence, features=feats,
                          flow_ids=cols["flow_id"][mine[:10]])


_TUNNEL_COLS = ("window", "flows", "queries", "client_bytes", "names", "encoded", "odd_qtype",
                "encoded_names", "odd_names", "raw_names")


class DnsTunnelDetector(_DnsDetector):
    """Much traffic to one domain in encoded-looking names or tunnel query types, or a little
    traffic whose names are clearly data (see the module docstring: volume and low-volume rules)."""

    name = "dnstunnel"
    technique = "T1071.004"
    _COLUMNS = _TUNNEL_COLS

    def __init__(self, *, min_queries: int = 100, min_client_bytes: int = 20_000, min_names: int = 50,
                 min_share: float = 0.5, min_label: int = 32, min_sub_len: int = 40,
                 min_entropy: float = 3.3, min_encoded_names: int = 8, min_odd_names: int = 12,
                 min_raw_names: int = 3, min_volume_names: int = 16, allow_domains: tuple[str, ...] = _ALLOW,
                 max_rows: int = 500_000, window_ms: int = 300_000, seed: int = 0) -> None:
        super().__init__(allow_domains=allow_domains, max_rows=max_rows, window_ms=window_ms, seed=seed)
        self.min_queries, self.min_client_bytes, self.min_names = min_queries, min_client_bytes, min_names
        self.min_share, self.min_label, self.min_sub_len, self.min_entropy = min_share, min_label, min_sub_len, min_entropy
        self.min_encoded_names, self.min_odd_names, self.min_raw_names = min_encoded_names, min_odd_names, min_raw_names
        self.min_volume_names = min_volume_names
        self._check(min_queries=(min_queries, 1, 1e9), min_client_bytes=(min_client_bytes, 1, 1e12),
                    min_names=(min_names, 1, 1e9), min_share=(min_share, 0.0, 1.0),
                    min_label=(min_label, 1, 63), min_sub_len=(min_sub_len, 1, 255),
                    min_entropy=(min_entropy, 0.0, 8.0), min_encoded_names=(min_encoded_names, 2, 1e9),
                    min_odd_names=(min_odd_names, 2, 1e9), min_raw_names=(min_raw_names, 1, 1e9),
                    min_volume_names=(min_volume_names, 1, 1e9))

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:
        frame = self._frame(flows)
        if frame is None:
            return []
        rows, nf = self._dns_rows(frame)
        if len(rows) == 0:
            return []
        c = frame.cols
        window = frame.t_ms[rows] // self.window_ms
        key = mix64(frame.src_key[rows], string_hash(nf["domain"]), window)
        new_name = _new_keys(self._seen, mix64(key, string_hash(nf["names"][nf["name_index"]])), window)
        encoded = (((nf["max_label"] >= self.min_label) | (nf["sub_len"] >= self.min_sub_len))
                   & (nf["sub_entropy"] >= self.min_entropy))
        odd = np.isin(nf["qtype"], TUNNEL_QTYPES)
        share = np.bincount(rows, minlength=frame.n)[rows].astype(np.float64)  # questions of the same flow
        g = group(key)
        pos = self._table.upsert(g.keys)
        t = self._table.cols
        t["window"][pos] = window[g.first]
        t["flows"][pos] += g.sum(1.0 / share)
        t["queries"][pos] += g.sum(nf["weight"])
        t["client_bytes"][pos] += g.sum(c["src2dst_bytes"][rows].astype(np.float64) / share)
        t["names"][pos] += g.sum(new_name.astype(np.float64))
        t["encoded"][pos] += g.sum(encoded / share)
        t["odd_qtype"][pos] += g.sum(odd / share)
        t["encoded_names"][pos] += g.sum((new_name & encoded).astype(np.float64))
        t["odd_names"][pos] += g.sum((new_name & odd & ~nf["plain"]).astype(np.float64))
        t["raw_names"][pos] += g.sum((new_name & np.isin(nf["qtype"], RAW_QTYPES)).astype(np.float64))
        out = self._evaluate(frame, rows, nf, g, pos)
        newest = int(window.max())
        _prune(self._table, newest, self.max_rows)
        _prune(self._seen, newest, self.max_rows)
        return out

    def _scores(self, t: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(volume score, low-volume score, encoded share, tunnel-qtype share) per key."""
        volume = np.maximum.reduce([t["queries"] / self.min_queries, t["client_bytes"] / self.min_client_bytes,
                                    t["names"] / self.min_names])
        enc_share, odd_share = t["encoded"] / t["flows"], t["odd_qtype"] / t["flows"]
        low = np.maximum.reduce([t["raw_names"] / self.min_raw_names,
                                 np.where(np.maximum(enc_share, odd_share) >= self.min_share,
                                          t["encoded_names"] / self.min_encoded_names, 0.0),
                                 t["odd_names"] / self.min_odd_names])
        return volume, low, enc_share, odd_share

    def _evaluate(self, frame: FlowFrame, rows: np.ndarray, nf: dict[str, np.ndarray], g: Any,
                  pos: np.ndarray) -> list[dict[str, Any]]:
        t = {k: v[pos] for k, v in self._table.cols.items()}
        volume, low, enc_share, odd_share = self._scores(t)
        loud = ((volume >= 1.0) & (np.maximum(enc_share, odd_share) >= self.min_share)
                & (t["names"] >= self.min_volume_names))
        hits = np.flatnonzero(loud | (low >= 1.0))
        out = []
        for gi in hits:
            in_group = g.inverse == gi
            mine = np.unique(rows[in_group])
            domain = str(nf["domain"][g.first[gi]])
            target = domain if domain != BAD_TLD else ips_to_strings(frame.cols["dst_ip"][mine[:1]])[0]
            sample = str(nf["names"][nf["name_index"][np.flatnonzero(in_group)[-1]]])
            feats = {"queries": t["queries"][gi], "client_bytes": t["client_bytes"][gi],
                     "distinct_names": t["names"][gi], "flows": t["flows"][gi],
                     "encoded_names": t["encoded_names"][gi], "tunnel_qtype_names": t["odd_names"][gi],
                     "null_or_private_names": t["raw_names"][gi],
                     "encoded_share": enc_share[gi], "tunnel_qtype_share": odd_share[gi],
                     "rule": "volume" if loud[gi] else "low_volume",
                     "qtypes": sorted({int(q) for q in nf["qtype"][in_group]})[:8],
                     "resolver": ips_to_strings(frame.cols["dst_ip"][mine[:1]])[0],
                     "domain": domain, "sample_name": sample[:120]}
            score = float(max(volume[gi], low[gi]))
            alert = self._emit(frame, mine, target, score, (1 - math.exp(-2 * score)) * max(enc_share[gi], odd_share[gi], 0.5),
                               feats, min(5, 1 + severity_from_margin(score)))
            if alert is not None:
                out.append(alert)
        return out


_DGA_COLS = ("window", "dga_domains", "nx_names", "names")


class DgaDetector(_DnsDetector):
    """A client resolving many machine-generated domains, many of them unregistered."""

    name = "dga"
    technique = "T1568.002"
    _COLUMNS = _DGA_COLS

    def __init__(self, *, min_dga_domains: int = 8, min_nxdomain: int = 4, min_score: float = 0.5,
                 allow_domains: tuple[str, ...] = _ALLOW, max_rows: int = 500_000,
                 window_ms: int = 300_000, seed: int = 0) -> None:
        super().__init__(allow_domains=allow_domains, max_rows=max_rows, window_ms=window_ms, seed=seed)
        self.min_dga_domains, self.min_nxdomain, self.min_score = min_dga_domains, min_nxdomain, min_score
        self._check(min_dga_domains=(min_dga_domains, 1, 1e9), min_nxdomain=(min_nxdomain, 0, 1e9),
                    min_score=(min_score, 0.0, 1.0))

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:
        frame = self._frame(flows)
        if frame is None:
            return []
        rows, nf = self._dns_rows(frame)
        keep = (nf["domain"] != BAD_TLD) & (nf["qtype"] != 12) if len(rows) else None
        if len(rows) == 0 or not keep.any():
            return []
        rows, nf = rows[keep], {k: (v if k == "names" else v[keep]) for k, v in nf.items()}
        window = frame.t_ms[rows] // self.window_ms
        key = mix64(frame.src_key[rows], window)
        dom_h = string_hash(nf["domain"])
        name_h = string_hash(nf["names"][nf["name_index"]])
        dga = nf["dga"] >= self.min_score
        new_dga = _new_keys(self._seen, mix64(key, dom_h, np.ones(len(rows), np.uint64)), window) & dga
        nx = frame.cols["dns_rcode"][rows] == 3
        new_nx = _new_keys(self._seen, mix64(key, name_h, np.full(len(rows), 2, np.uint64)), window) & nx
        new_name = _new_keys(self._seen, mix64(key, name_h, np.full(len(rows), 3, np.uint64)), window)
        g = group(key)
        pos = self._table.upsert(g.keys)
        t = self._table.cols
        t["window"][pos] = window[g.first]
        t["dga_domains"][pos] += g.sum(new_dga.astype(np.float64))
        t["nx_names"][pos] += g.sum(new_nx.astype(np.float64))
        t["names"][pos] += g.sum(new_name.astype(np.float64))
        out = self._evaluate(frame, rows, nf, dga, g, pos)
        newest = int(window.max())
        _prune(self._table, newest, self.max_rows)
        _prune(self._seen, newest, self.max_rows)
        return out

    def _evaluate(self, frame: FlowFrame, rows: np.ndarray, nf: dict[str, np.ndarray], dga: np.ndarray,
                  g: Any, pos: np.ndarray) -> list[dict[str, Any]]:
        t = {k: v[pos] for k, v in self._table.cols.items()}
        ratio = t["dga_domains"] / self.min_dga_domains
        fire = (ratio >= 1.0) & ((t["nx_names"] >= self.min_nxdomain) | (ratio >= 3.0))
        out = []
        for gi in np.flatnonzero(fire):
            in_group = g.inverse == gi
            mine = rows[in_group & dga] if (in_group & dga).any() else rows[in_group]
            sample = sorted({str(d) for d in nf["domain"][in_group & dga]})[:5]
            feats = {"dga_domains": t["dga_domains"][gi], "nxdomain_names": t["nx_names"][gi],
                     "distinct_names": t["names"][gi], "nx_share": t["nx_names"][gi] / max(t["names"][gi], 1.0),
                     "sample_domains": sample}
            score = float(ratio[gi])
            nx_conf = min(1.0, 0.5 + t["nx_names"][gi] / max(2.0 * t["dga_domains"][gi], 1.0))
            alert = self._emit(frame, mine, sample[0] if len(sample) == 1 else "many", score,
                               (1 - math.exp(-score)) * nx_conf, feats, min(4, 1 + severity_from_margin(score)))
            if alert is not None:
                out.append(alert)
        return out
