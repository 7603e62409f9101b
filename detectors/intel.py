"""Connections to threat-intelligence indicators (MITRE T1071, or the indicator's own technique).

The detector holds indicator sets per feed (``source``): addresses and CIDRs, domain names and
JA4 TLS client fingerprints. The stream layer feeds them with :meth:`IntelDetector.set_indicators`
(a feed's new list replaces its old one); a few static ones may also be given to the constructor
(feed ``"static"``). Bad entries are counted in ``finsa_detector_indicators_rejected_total`` and
skipped.

Matching is vectorised: addresses through :class:`~finsa.detectors.netsets.NetworkSet` (one
hashed look-up per prefix length present, exact addresses being /32 or /128), on both ends of a
flow; domains against ``dns_query``, ``tls_sni`` and ``http_host`` with subdomain matching
(``evil.example`` matches ``a.b.evil.example``), once per distinct name of the batch; JA4 by
exact value. One alert per (institution, source address) and window; entity = the flow's source
(the internal client that contacted the indicator, or the listed address that came in),
target = the matched indicator. Severity 4 when the peer answered, 3 for an unanswered attempt;
the evidence names the feed, the indicator, where it matched and the feed's technique (the alert's
``technique`` column stays T1071, the detector's own).

>>> from finsa.wire import FLOW
>>> d = IntelDetector()
>>> d.set_indicators(addresses=["192.0.2.0/24"], domains=["evil.example"], source="feed-1")
{'addresses': 1, 'domains': 1, 'ja4': 0, 'rejected': 0}
>>> b = FLOW.make_batch({"src_ip": ["10.1.0.5", "10.1.0.6"], "dst_ip": ["192.0.2.77", "198.51.100.1"],
...     "dst_port": [443, 53], "protocol": [6, 17], "dns_query": ["", "cdn.evil.example"],
...     "dst2src_packets": [3, 1], "first_seen_ms": [1_000, 2_000], "last_seen_ms": [1_500, 2_010],
...     "flow_id": [1, 2], "institution_id": ["bank-a"] * 2})
>>> [(a["entity"], a["target"]) for a in d.process(b)]
[('10.1.0.5', '192.0.2.0/24'), ('10.1.0.6', 'evil.example')]
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from finsa.detectors.base import Detector, DetectorParamError, WindowDeduper, make_alert
from finsa.detectors.features import FlowFrame, group
from finsa.detectors.netsets import NetworkSet, parse_network
from finsa.metrics import REGISTRY
from finsa.wire import RecordBatch

__all__ = ["IntelDetector"]

REJECTED = REGISTRY.counter("finsa_detector_indicators_rejected_total",
                            "Threat-intel indicators refused (malformed)", ["detector"])
_NAME_COLUMNS = ("dns_query", "tls_sni", "http_host")


def _looked_up(values: np.ndarray, lookup: Callable[[str], str]) -> np.ndarray:
    """``lookup`` of every non-empty value ("" for empty ones), once per distinct value.

    Most flows carry no name: only the others are looked at (no sort of the whole column).

    >>> _looked_up(np.array(["", "a.example", "", "a.example"], dtype=object), str.upper).tolist()
    ['', 'A.EXAMPLE', '', 'A.EXAMPLE']
    """
    out = np.full(len(values), "", dtype=object)
    named = np.flatnonzero(values != "")
    if len(named):
        seen: dict[object, str] = {}
        out[named] = [seen[v] if v in seen else seen.setdefault(v, lookup(str(v))) for v in values[named].tolist()]
    return out


def _clean_domain(text: str) -> str:
    name = str(text).strip().lower().rstrip(".")
    if name.startswith("*."):
        name = name[2:]
    if not name or len(name) > 253 or " " in name or "/" in name:
        raise ValueError(text)
    return name


class IntelDetector(Detector):
    """Flows touching listed addresses, domains or JA4 fingerprints."""

    name = "intel"
    technique = "T1071"

    def __init__(self, *, addresses: tuple[str, ...] = (), domains: tuple[str, ...] = (),
                 ja4: tuple[str, ...] = (), window_ms: int = 60_000, seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.addresses, self.domains, self.ja4 = tuple(addresses), tuple(domains), tuple(ja4)
        for a in self.addresses:
            try:
                parse_network(str(a))
            except ValueError:
                raise DetectorParamError(f"{self.name}.addresses: {a!r} is not an address or CIDR") from None
        self._feeds: dict[str, dict[str, Any]] | None = None
        self._compiled: dict[str, Any] | None = None
        self._dedupe: WindowDeduper | None = None

    # --- indicators ----------------------------------------------------------------------

    def _ensure(self) -> None:
        if self._feeds is None:
            self._feeds, self._dedupe = {}, WindowDeduper(self.window_ms)
            if self.addresses or self.domains or self.ja4:
                self.set_indicators(addresses=self.addresses, domains=self.domains, ja4=self.ja4, source="static")

    def set_indicators(self, *, addresses: Iterable[str] = (), domains: Iterable[str] = (),
                       ja4: Iterable[str] = (), source: str = "default", technique: str = "") -> dict[str, int]:
        """Replace feed ``source``'s indicators; return how many of each were kept and rejected."""
        self._ensure()
        nets, names, prints, rejected = [], [], [], 0
        for a in addresses:
            try:
                parse_network(str(a))
                nets.append(str(a).strip())
            except ValueError:
                rejected += 1
        for d in domains:
            try:
                names.append(_clean_domain(d))
            except ValueError:
                rejected += 1
        prints = [str(j).strip() for j in ja4 if str(j).strip()]
        if rejected:
            REJECTED.inc(rejected, detector=self.name)
        self._feeds[str(source)] = {"addresses": nets, "domains": names, "ja4": prints,
                                    "technique": str(technique)}
        self._compile()
        return {"addresses": len(nets), "domains": len(names), "ja4": len(prints), "rejected": rejected}

    def _compile(self) -> None:
        nets, net_feed, domains, ja4 = [], [], {}, {}
        for source in sorted(self._feeds):
            feed = self._feeds[source]
            nets += feed["addresses"]
            net_feed += [source] * len(feed["addresses"])
            domains.update({d: source for d in feed["domains"] if d not in domains})
            ja4.update({j: source for j in feed["ja4"] if j not in ja4})
        self._compiled = {"nets": NetworkSet(nets), "net_feed": net_feed, "domains": domains, "ja4": ja4}

    def _domain_hit(self, name: str) -> str:
        labels = name.lower().rstrip(".").split(".")
        table = self._compiled["domains"]
        for i in range(len(labels)):
            suffix = ".".join(labels[i:])
            if suffix in table:
                return suffix
        return ""

    # --- matching ------------------------------------------------------------------------

    def _matches(self, frame: FlowFrame) -> tuple[np.ndarray, list[tuple[str, str, str]]]:
        """Rows touching an indicator and, per such row, (kind, indicator, feed)."""
        comp, c = self._compiled, frame.cols
        n = frame.n
        hit = np.zeros(n, dtype=bool)
        found: dict[int, tuple[str, str, str]] = {}
        nets = comp["nets"]
        for kind, col in (("dst_address", "dst_ip"), ("src_address", "src_ip")):
            m = nets.match(c[col]) if len(nets) else np.full(n, -1)
            for i in np.flatnonzero((m >= 0) & ~hit).tolist():
                found[i] = (kind, nets.networks[m[i]], comp["net_feed"][m[i]])
            hit |= m >= 0
        by_name: list[tuple[str, Callable[[str], str], Any]] = [(col, self._domain_hit, comp["domains"]) for col in _NAME_COLUMNS]
        specs = by_name + [("tls_ja4", lambda v: v if v in comp["ja4"] else "", comp["ja4"])]
        for col, lookup, table in specs:
            if not table:
                continue
            per_row = _looked_up(c[col], lookup)
            for i in np.flatnonzero((per_row != "") & ~hit).tolist():
                found[i] = (col, per_row[i], table[per_row[i]])
            hit |= per_row != ""
        rows = np.flatnonzero(hit)
        return rows, [found[i] for i in rows.tolist()]

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:
        frame = self._frame(flows)
        if frame is None:
            return []
        self._ensure()
        if not self._feeds:
            return []
        rows, what = self._matches(frame)
        if not len(rows):
            return []
        g = group(frame.src_key[rows])
        out = []
        for gi in range(len(g)):
            idx = np.flatnonzero(g.inverse == gi)
            alert = self._alert(frame, rows[idx], [what[i] for i in idx])
            if alert is not None:
                out.append(alert)
        return out

    def _alert(self, frame: FlowFrame, mine: np.ndarray, what: list[tuple[str, str, str]]) -> dict[str, Any] | None:
        c = frame.cols
        claimed = self._dedupe.claim_source(frame, mine)
        if claimed is None:
            return None
        inst, entity, time_ms = claimed
        answered = c["dst2src_packets"][mine] > 0
        kind, indicator, feed = what[0]
        feats = {"indicator": indicator, "matched_in": kind, "feed": feed,
                 "indicator_technique": self._feeds[feed]["technique"] or self.technique,
                 "flows": len(mine), "answered_flows": int(answered.sum()),
                 "distinct_indicators": len({w[1] for w in what})}
        return make_alert(detector=self.name, technique=self.technique, institution_id=inst, entity=entity,
                          entity_kind="src_ip", target=indicator, time_ms=time_ms,
                          first_seen_ms=int(frame.t_ms[mine].min()), window_ms=self.window_ms,
                          severity=4 if answered.any() else 3, score=float(len(mine)),
                          confidence=0.9 if answered.any() else 0.7, features=feats,
                          flow_ids=c["flow_id"][mine[:10]])
