"""Cross-institution campaigns: alerts that share an attacker trait are one campaign.

Each (enriched) alert yields *keys*: its attacker address (``addr:``, any string, so pseudonyms
work), the attacker's /24 or /48 (``net:``), AS name with technique (``asn:``; the AS alone would
merge every scanner of a big cloud), the matched intel indicator (``intel:``), the domain and the
TLS/SSH fingerprint of its evidence (``dom:``, ``fp:``) and, for severe alerts (severity >=
``tt_min_severity``), the technique itself (``tt:``: the same severe technique at several
institutions within the window). A key *links* alerts that are at most ``window_ms`` apart (each
alert refreshes the key). Alerts linked directly or through a chain of keys form one cluster:
union-find where the older cluster absorbs the younger and takes over its keys (union by age,
ids stay stable). A cluster that has hit ``min_institutions`` institutions is a *campaign*.

State is bounded: keys idle for longer than the window are dropped, clusters idle for longer than
``retain_ms`` too, and hard caps (``max_keys``, ``max_clusters``) evict the oldest. Alerts are
handled in (time_ms, alert_id) order within a batch and redelivered alerts (same ``alert_id``)
are ignored, so the same input gives the same campaigns and ids.

>>> t = CampaignTracker()
>>> a = dict(alert_id="1", time_ms=0, institution_id="pay-a", subsector="payment", entity="203.0.113.9",
...          entity_kind="src_ip", technique="T1046", severity=3, confidence=0.9)
>>> t.observe([a, dict(a, alert_id="2", time_ms=60_000, institution_id="pay-b")])
>>> [(c.institution_order(), c.alert_count) for c in t.drain_updates()]
[(['pay-a', 'pay-b'], 2)]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from finsa.metrics import REGISTRY

__all__ = ["Campaign", "CampaignTracker", "alert_keys", "KEY_KINDS", "SPREAD_BUCKET_MS"]

ALERTS = REGISTRY.counter("finsa_campaign_alerts_total", "Alerts seen by the campaign tracker, by outcome", ["outcome"])
EVICTED = REGISTRY.counter("finsa_campaign_evictions_total", "Campaign state dropped, by what", ["what"])
KEY_KINDS = ("addr", "net", "asn", "intel", "dom", "fp", "tt")
SPREAD_BUCKET_MS = 5 * 60 * 1000
MAX_SPREAD_BUCKETS = 288  # one day of 5-minute buckets
MAX_VALUES = 1000  # per indicator kind and campaign
_ATTACKER_KINDS = ("src_ip",)


def alert_keys(alert: Mapping[str, Any], kinds: Iterable[str] = KEY_KINDS, tt_min_severity: int = 4) -> list[str]:
    """The linking keys of one alert (see the module docstring), in a fixed order.

    >>> alert_keys({"entity": "198.51.100.7", "entity_kind": "src_ip", "entity_prefix": "198.51.100.0/24",
    ...             "technique": "T1110", "severity": 2})
    ['addr:198.51.100.7', 'net:198.51.100.0/24']
    """
    kinds = set(kinds)
    keys = []
    attacker = alert.get("entity_kind") in _ATTACKER_KINDS and alert.get("entity")
    technique = alert.get("technique", "")
    if attacker and "addr" in kinds:
        keys.append(f"addr:{alert['entity']}")
    if attacker and "net" in kinds and alert.get("entity_prefix"):
        keys.append(f"net:{alert['entity_prefix']}")
    if attacker and "asn" in kinds and alert.get("entity_asn"):
        keys.append(f"asn:{alert['entity_asn']}|{technique}")
    for kind, column in (("intel", "intel"), ("dom", "domain"), ("fp", "fingerprint")):
        if kind in kinds and alert.get(column):
            keys.append(f"{kind}:{alert[column]}")
    if "tt" in kinds and technique and int(alert.get("severity", 0)) >= tt_min_severity:
        keys.append(f"tt:{technique}")
    return keys


@dataclass
class Campaign:
    """One cluster of linked alerts; a campaign once it spans several institutions."""

    campaign_id: str
    first_seen_ms: int
    last_seen_ms: int
    institutions: dict[str, int] = field(default_factory=dict)  # id -> first hit, in hit order
    subsectors: dict[str, int] = field(default_factory=dict)  # subsector -> first hit
    institution_subsector: dict[str, str] = field(default_factory=dict)
    techniques: dict[str, int] = field(default_factory=dict)
    detectors: dict[str, int] = field(default_factory=dict)  # detector -> alerts (indicator provenance)
    alert_count: int = 0
    max_severity: int = 0
    severe_hits: dict[str, int] = field(default_factory=dict)  # institution -> first severity>=4 hit
    spread: dict[int, int] = field(default_factory=dict)  # 5-minute bucket start -> alerts
    addresses: dict[str, float] = field(default_factory=dict)  # attacker address -> confidence
    prefixes: set[str] = field(default_factory=set)
    asns: set[str] = field(default_factory=set)
    domains: set[str] = field(default_factory=set)
    fingerprints: set[str] = field(default_factory=set)
    intel: set[str] = field(default_factory=set)
    target_kinds: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)
    merged_from: list[str] = field(default_factory=list)

    def institution_order(self) -> list[str]:
        return sorted(self.institutions, key=lambda i: (self.institutions[i], i))

    def hit_in(self, subsector: str) -> list[str]:
        return [i for i in self.institution_order() if self.institution_subsector.get(i) == subsector]

    def add(self, alert: Mapping[str, Any]) -> None:
        t = int(alert["time_ms"])
        inst = str(alert["institution_id"])
        sub = str(alert.get("subsector") or "unknown")
        sev = int(alert.get("severity", 0))
        self.first_seen_ms, self.last_seen_ms = min(self.first_seen_ms, t), max(self.last_seen_ms, t)
        self.institutions[inst] = min(t, self.institutions.get(inst, t))
        self.subsectors[sub] = min(t, self.subsectors.get(sub, t))
        self.institution_subsector[inst] = sub
        tech = str(alert.get("technique", ""))
        self.techniques[tech] = self.techniques.get(tech, 0) + 1
        det = str(alert.get("detector") or "")
        if det and (det in self.detectors or len(self.detectors) < MAX_VALUES):
            self.detectors[det] = self.detectors.get(det, 0) + 1
        self.alert_count += 1
        self.max_severity = max(self.max_severity, sev)
        if sev >= 4:
            self.severe_hits[inst] = min(t, self.severe_hits.get(inst, t))
        bucket = t // SPREAD_BUCKET_MS * SPREAD_BUCKET_MS
        self.spread[bucket] = self.spread.get(bucket, 0) + 1
        if len(self.spread) > MAX_SPREAD_BUCKETS:
            del self.spread[min(self.spread)]
        if alert.get("entity_kind") in _ATTACKER_KINDS and alert.get("entity"):
            if len(self.addresses) < MAX_VALUES or alert["entity"] in self.addresses:
                conf = float(alert.get("confidence", 0.5))
                self.addresses[alert["entity"]] = max(conf, self.addresses.get(alert["entity"], 0.0))
            self._put(self.prefixes, alert.get("entity_prefix"))
            self._put(self.asns, alert.get("entity_asn"))
        for target, column in ((self.domains, "domain"), (self.fingerprints, "fingerprint"),
                               (self.intel, "intel"), (self.target_kinds, "target_kind")):
            self._put(target, alert.get(column))

    @staticmethod
    def _put(values: set[str], value: Any) -> None:
        if value and len(values) < MAX_VALUES:
            values.add(str(value))

    def absorb(self, other: "Campaign") -> None:
        """Take over everything of a younger cluster found to be the same campaign."""
        self.first_seen_ms = min(self.first_seen_ms, other.first_seen_ms)
        self.last_seen_ms = max(self.last_seen_ms, other.last_seen_ms)
        for mine, theirs in ((self.institutions, other.institutions), (self.subsectors, other.subsectors),
                             (self.severe_hits, other.severe_hits)):
            for k, v in theirs.items():
                mine[k] = min(v, mine.get(k, v))
        self.institution_subsector.update(other.institution_subsector)
        for technique, count in other.techniques.items():
            self.techniques[technique] = self.techniques.get(technique, 0) + count
        for detector, count in other.detectors.items():
            self.detectors[detector] = self.detectors.get(detector, 0) + count
        for step, spread in other.spread.items():
            self.spread[step] = self.spread.get(step, 0) + spread
        for address, confidence in other.addresses.items():
            self.addresses[address] = max(confidence, self.addresses.get(address, 0.0))
        for mine_set, theirs_set in ((self.prefixes, other.prefixes), (self.asns, other.asns),
                                     (self.domains, other.domains), (self.fingerprints, other.fingerprints),
                                     (self.intel, other.intel), (self.target_kinds, other.target_kinds)):
            mine_set.update(list(theirs_set)[: max(0, MAX_VALUES - len(mine_set))])
        self.alert_count += other.alert_count
        self.max_severity = max(self.max_severity, other.max_severity)
        self.merged_from += [other.campaign_id, *other.merged_from]

    def row(self) -> dict[str, Any]:
        """A JSON-friendly row (for the proposed CAMPAIGN record and the web view)."""
        return {
            "campaign_id": self.campaign_id, "first_seen_ms": self.first_seen_ms,
            "last_seen_ms": self.last_seen_ms,
            "institutions": [[i, self.institutions[i]] for i in self.institution_order()],
            "institution_count": len(self.institutions),
            "subsectors": sorted(([s, t] for s, t in self.subsectors.items()), key=lambda x: (x[1], x[0])),
            "techniques": dict(sorted(self.techniques.items())), "alert_count": self.alert_count,
            "max_severity": self.max_severity,
            "spread": [[b, n] for b, n in sorted(self.spread.items())],
            "indicators": {"addresses": sorted(self.addresses), "prefixes": sorted(self.prefixes),
                           "asns": sorted(self.asns), "domains": sorted(self.domains),
                           "fingerprints": sorted(self.fingerprints), "intel": sorted(self.intel)},
            "merged_from": list(self.merged_from),
        }


def _campaign_id(key: str, time_ms: int, alert_id: str) -> str:
    return "cmp-" + hashlib.blake2b(f"{key}|{time_ms}|{alert_id}".encode(), digest_size=8).hexdigest()


class CampaignTracker:
    """Union-find of alerts over shared keys; see the module docstring."""

    def __init__(self, window_ms: int = 3_600_000, kinds: Iterable[str] = KEY_KINDS, tt_min_severity: int = 4,
                 min_institutions: int = 2, retain_ms: int = 86_400_000, max_keys: int = 200_000,
                 max_clusters: int = 50_000, max_seen_alerts: int = 200_000) -> None:
        unknown = set(kinds) - set(KEY_KINDS)
        if unknown or window_ms <= 0 or min_institutions < 1:
            raise ValueError(f"bad campaign settings (unknown key kinds: {sorted(unknown)})")
        self.window_ms, self.kinds, self.tt_min_severity = window_ms, tuple(kinds), tt_min_severity
        self.min_institutions, self.retain_ms = min_institutions, retain_ms
        self.max_keys, self.max_clusters, self.max_seen_alerts = max_keys, max_clusters, max_seen_alerts
        self.keys: dict[str, list] = {}  # key -> [cluster id, last seen ms]
        self.clusters: dict[str, Campaign] = {}
        self._seen: dict[str, None] = {}
        self._dirty: set[str] = set()

    def observe(self, alerts: Iterable[Mapping[str, Any]]) -> None:
        """Add enriched alert rows (ALERT columns plus enrichment columns)."""
        outcomes: dict[str, int] = {}
        for alert in sorted(alerts, key=lambda a: (int(a["time_ms"]), str(a.get("alert_id", "")))):
            outcome = self._observe_one(alert)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        for outcome, n in outcomes.items():
            ALERTS.inc(n, outcome=outcome)

    def _observe_one(self, alert: Mapping[str, Any]) -> str:
        aid = str(alert.get("alert_id", ""))
        if aid and aid in self._seen:
            return "duplicate"
        if aid:
            self._seen[aid] = None
            if len(self._seen) > self.max_seen_alerts:
                del self._seen[next(iter(self._seen))]
        keys = alert_keys(alert, self.kinds, self.tt_min_severity)
        if not keys:
            return "no_key"
        t = int(alert["time_ms"])
        live_ids = {self.keys[k][0] for k in keys if k in self.keys and abs(t - self.keys[k][1]) <= self.window_ms}
        live = sorted((self.clusters[c] for c in live_ids if c in self.clusters),
                      key=lambda c: (c.first_seen_ms, c.campaign_id))
        if live:
            root = live[0]
            for other in live[1:]:
                self._merge(root, other)
        else:
            root = Campaign(_campaign_id(keys[0], t, aid), t, t)
            self.clusters[root.campaign_id] = root
        root.add(alert)
        for k in keys:
            slot = self.keys.get(k)
            self.keys[k] = [root.campaign_id, max(t, slot[1]) if slot and slot[0] == root.campaign_id else t]
            if len(root.keys) < MAX_VALUES * 4:
                root.keys.add(k)
        self._dirty.add(root.campaign_id)
        return "linked" if live else "new_cluster"

    def _merge(self, root: Campaign, other: Campaign) -> None:
        root.absorb(other)
        for k in other.keys:
            slot = self.keys.get(k)
            if slot is not None and slot[0] == other.campaign_id:
                slot[0] = root.campaign_id
        root.keys.update(other.keys)
        del self.clusters[other.campaign_id]
        self._dirty.discard(other.campaign_id)

    def is_campaign(self, c: Campaign) -> bool:
        return len(c.institutions) >= self.min_institutions

    def campaigns(self) -> list[Campaign]:
        """Current campaigns (clusters over several institutions), oldest first."""
        return sorted((c for c in self.clusters.values() if self.is_campaign(c)),
                      key=lambda c: (c.first_seen_ms, c.campaign_id))

    def drain_updates(self) -> list[Campaign]:
        """Campaigns that are new or changed since the last call, oldest first."""
        out = [self.clusters[c] for c in self._dirty if c in self.clusters and self.is_campaign(self.clusters[c])]
        self._dirty.clear()
        return sorted(out, key=lambda c: (c.first_seen_ms, c.campaign_id))

    def expire(self, now_ms: int) -> None:
        """Drop idle keys and clusters, then enforce the hard caps (oldest first)."""
        for k in [k for k, (_, seen) in self.keys.items() if now_ms - seen > self.window_ms]:
            del self.keys[k]
            EVICTED.inc(what="key_idle")
        for cid in [c for c, cl in self.clusters.items() if now_ms - cl.last_seen_ms > self.retain_ms]:
            del self.clusters[cid]
            EVICTED.inc(what="cluster_idle")
        if len(self.keys) > self.max_keys:
            for k in sorted(self.keys, key=lambda k: self.keys[k][1])[: len(self.keys) - self.max_keys]:
                del self.keys[k]
                EVICTED.inc(what="key_cap")
        if len(self.clusters) > self.max_clusters:
            order = sorted(self.clusters.values(), key=lambda c: (self.is_campaign(c), c.last_seen_ms))
            for c in order[: len(self.clusters) - self.max_clusters]:
                del self.clusters[c.campaign_id]
                EVICTED.inc(what="cluster_cap")
