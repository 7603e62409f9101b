"""Scoring offline detections against a scenario's ground truth.

An **episode** is one (attack, victim institution) of ``ground_truth.json``: its span runs from
the first to the last packet of the attack at that institution's victims. An alert **matches**
an episode when all hold:

- same institution;
- same technique family: the parent ATT&CK id (``T1071.004`` and ``T1071`` are both ``T1071``);
- its entity, or its target (without a port), is one of the episode's entities: the attacker,
  every flooding source, a victim address at that institution, the attack's domain, or a
  resolver that relayed its queries (``relays``);
- its time lies in ``[start - 5 s, end + 120 s]``.

An alert about an episode's entity in that time range but with another technique (a port-scan
alert about a lateral mover, an ``anomaly`` alert about a flooder) is **related**, not matched;
an alert that is neither is **false**. Time to detect = first matching alert's time minus the
episode start (never below 0). False alerts are reported per million benign flows, benign
meaning flows that touch no episode address (attacker, source or victim) during its span.

>>> truth = {"attacks": [{"id": "a-1", "attack": "port_scan", "technique": "T1046", "attacker": "203.0.113.66",
...     "victims": [{"institution": "bank-a", "address": "192.0.2.10", "start_ms": 10_000, "end_ms": 20_000}]}]}
>>> (ep,) = episodes(truth)
>>> alert = {"institution_id": "bank-a", "technique": "T1046", "entity": "203.0.113.66", "target": "many",
...          "time_ms": 14_000}
>>> matches(alert, ep), related(dict(alert, technique="anomaly"), ep)
(True, True)

**Campaigns** (ground truth ``campaigns``, :func:`score_campaigns`): the sector picture's
campaign whose attacker addresses include the actor (the one spanning most of its victims) is
the detected campaign; it is *recognised* once it spans two institutions (the second
institution's first hit). For each victim, the **lead time** is its attack's start minus the
first warning addressed to it (its institution, or its subsector as a whole) issued since the
campaign began; positive means warned before the actor arrived. The goal: every victim attacked
after the campaign was recognised was warned before.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import Any, Mapping, Sequence

import numpy as np

from finsa.wire import RecordBatch, ips_from_strings

__all__ = ["Episode", "episodes", "family", "matches", "related", "score", "score_campaigns", "BEFORE_MS",
           "AFTER_MS"]

BEFORE_MS, AFTER_MS = 5_000, 120_000


@dataclass(frozen=True)
class Episode:
    attack: str
    technique: str
    institution: str
    start_ms: int
    end_ms: int
    entities: frozenset[str]   # what an alert may name
    addresses: frozenset[str]  # whose flows are attack flows (attacker, sources, victims)
    attack_id: str = ""


def family(technique: str) -> str:
    """``T1071.004`` -> ``T1071``; anything else unchanged."""
    return technique.split(".", 1)[0]


def episodes(truth: dict) -> list[Episode]:
    """One episode per (attack, victim institution), in ground-truth order."""
    out = []
    for attack in truth["attacks"]:
        shared = {attack["attacker"], *attack.get("sources", ())}
        named = shared | set(attack.get("relays", ())) | ({attack["domain"]} if attack.get("domain") else set())
        for inst in dict.fromkeys(v["institution"] for v in attack["victims"]):
            mine = [v for v in attack["victims"] if v["institution"] == inst]
            victims = {v["address"] for v in mine}
            out.append(Episode(attack["attack"], attack["technique"], inst, min(v["start_ms"] for v in mine),
                               max(v["end_ms"] for v in mine), frozenset(named | victims),
                               frozenset(shared | victims), attack.get("id", "")))
    return out


def _host(target: str) -> str:
    """``192.0.2.10:443`` -> ``192.0.2.10``; ``[2001:db8::1]:22`` -> ``2001:db8::1``; else unchanged."""
    if target.startswith("[") and "]" in target:
        return target[1:target.index("]")]
    return target.rsplit(":", 1)[0] if target.count(":") == 1 else target


def related(alert: dict[str, Any], ep: Episode) -> bool:
    """Same institution, names an episode entity, in the episode's time range (any technique)."""
    return (alert["institution_id"] == ep.institution
            and (alert["entity"] in ep.entities or _host(alert["target"]) in ep.entities)
            and ep.start_ms - BEFORE_MS <= alert["time_ms"] <= ep.end_ms + AFTER_MS)


def matches(alert: dict[str, Any], ep: Episode) -> bool:
    """:func:`related` and the same technique family."""
    return family(alert["technique"]) == family(ep.technique) and related(alert, ep)


def _attack_flows(flows: RecordBatch, eps: list[Episode]) -> int:
    """Flows that touch an episode address at its institution during its span."""
    if not len(flows) or not eps:
        return 0
    cols = flows.columns
    hit = np.zeros(len(flows), dtype=bool)
    src, dst = cols["src_ip"].view(np.uint64), cols["dst_ip"].view(np.uint64)
    for ep in eps:
        addrs = ips_from_strings(sorted(ep.addresses)).view(np.uint64)
        when = ((cols["institution_id"] == ep.institution) & (cols["last_seen_ms"] >= ep.start_ms)
                & (cols["first_seen_ms"] <= ep.end_ms))
        for side in (src, dst):
            hit |= when & (side[:, None, :] == addrs[None, :, :]).all(axis=2).any(axis=1)
    return int(hit.sum())


def _row(kind: str, eps: list[Episode], first: dict[int, int], false: int) -> dict[str, Any]:
    delays = [first[k] for k in range(len(eps)) if k in first]
    return {"attack": kind, "technique": eps[0].technique if eps else "", "episodes": len(eps),
            "detected": len(delays), "ttd_median_s": round(median(delays) / 1000, 1) if delays else None,
            "ttd_max_s": round(max(delays) / 1000, 1) if delays else None, "false_alerts": false}


def score(truth: dict, alerts: RecordBatch, flows: RecordBatch) -> dict[str, Any]:
    """Per attack type and in total: episodes, detected, time to detect, false alerts (see module doc)."""
    eps = episodes(truth)
    rows = alerts.rows() if len(alerts) else []
    first: dict[int, int] = {}
    kinds: list[str] = []  # per alert: matched / related / false
    for alert in sorted(rows, key=lambda a: a["time_ms"]):
        hits = [k for k, ep in enumerate(eps) if matches(alert, ep)]
        for k in hits:
            first.setdefault(k, max(0, alert["time_ms"] - eps[k].start_ms))
        kinds.append("matched" if hits else "related" if any(related(alert, ep) for ep in eps) else "false")
    ordered = sorted(rows, key=lambda a: a["time_ms"])
    false_alerts = [a for a, k in zip(ordered, kinds) if k == "false"]
    by_kind: dict[str, list[int]] = {}
    for k, ep in enumerate(eps):
        by_kind.setdefault(ep.attack, []).append(k)
    per_attack = []
    for kind, index in by_kind.items():
        fam = family(eps[index[0]].technique)
        false = sum(1 for a in false_alerts if family(a["technique"]) == fam)
        per_attack.append(_row(kind, [eps[k] for k in index], {j: first[k] for j, k in enumerate(index)
                                                                if k in first}, false))
    benign = max(0, len(flows) - _attack_flows(flows, eps))
    families = {family(ep.technique) for ep in eps}
    other = [a for a in false_alerts if family(a["technique"]) not in families]
    total = _row("total", eps, first, len(false_alerts))
    total.update(technique="", alerts=len(rows), matched=kinds.count("matched"), related=kinds.count("related"),
                 other_false=len(other), flows=len(flows), benign_flows=benign,
                 false_per_million=round(len(false_alerts) * 1e6 / benign, 1) if benign else None)
    return {"attacks": per_attack, "total": total, "false": false_alerts,
            "episodes": [{"attack": ep.attack, "id": ep.attack_id, "institution": ep.institution,
                          "detected": k in first, "ttd_s": round(first[k] / 1000, 1) if k in first else None}
                         for k, ep in enumerate(eps)]}


def _detected(campaigns: Sequence[Any], actor: str, victims: set[str]) -> Any | None:
    """The campaign naming ``actor`` that spans most of ``victims`` (the oldest on a tie)."""
    found = [c for c in campaigns if actor in c.addresses]
    if not found:
        return None
    return max(found, key=lambda c: (len(victims & set(c.institutions)), -c.first_seen_ms))


def _first_warning(warnings: Sequence[Any], inst: str, subsector: str, since_ms: int) -> Any | None:
    """The earliest warning since ``since_ms`` addressed to ``inst`` or to its whole subsector."""
    mine = [w for w in warnings if w.time_ms >= since_ms and (
        w.institution_id == inst or (not w.institution_id and subsector and w.subsector == subsector))]
    return min(mine, key=lambda w: (w.time_ms, w.warning_id), default=None)


def _victim_row(v: dict, c: Any, recognised_ms: int | None, warnings: Sequence[Any], subsector: str,
                since_ms: int) -> dict[str, Any]:
    w = _first_warning(warnings, v["institution"], subsector, since_ms)
    lead_ms = v["start_ms"] - w.time_ms if w is not None else None
    return {"institution": v["institution"], "start_ms": v["start_ms"],
            "joined_ms": c.institutions.get(v["institution"]) if c is not None else None,
            "after_recognition": recognised_ms is not None and v["start_ms"] > recognised_ms,
            "warned_ms": w.time_ms if w is not None else None, "warning_kind": w.kind if w is not None else None,
            "lead_s": round(lead_ms / 1000, 1) if lead_ms is not None else None,
            "warned_before": lead_ms is not None and lead_ms > 0}


def score_campaigns(truth: dict, campaigns: Sequence[Any], warnings: Sequence[Any],
                    subsector_of: Mapping[str, str]) -> list[dict[str, Any]]:
    """Per ground-truth campaign: recognised or not, who joined in which order, lead times (module doc).

    ``campaigns`` are :class:`~finsa.sector.campaigns.Campaign` objects, ``warnings``
    :class:`~finsa.sector.early_warning.EarlyWarning` objects (e.g. a
    :class:`~finsa.app.offline.SectorRun`'s).
    """
    out = []
    for tc in truth.get("campaigns", []):
        victims = sorted(tc["victims"], key=lambda v: v["start_ms"])
        c = _detected(campaigns, tc["actor"], {v["institution"] for v in victims})
        order = c.institution_order() if c is not None else []
        recognised_ms = c.institutions[order[1]] if c is not None and len(order) >= 2 else None
        rows = [_victim_row(v, c, recognised_ms, warnings, subsector_of.get(v["institution"], ""), tc["start_ms"])
                for v in victims]
        later = [r for r in rows if r["after_recognition"]]
        leads = [r["lead_s"] for r in later if r["lead_s"] is not None]
        truth_order = [v["institution"] for v in victims]
        out.append({
            "id": tc["id"], "actor": tc["actor"], "subsector": tc.get("subsector", ""), "start_ms": tc["start_ms"],
            "recognised": recognised_ms is not None, "campaign_id": c.campaign_id if c is not None else None,
            "recognised_ms": recognised_ms,
            "recognised_after_s": (round((recognised_ms - tc["start_ms"]) / 1000, 1)
                                   if recognised_ms is not None else None),
            "joined": [[i, c.institutions[i]] for i in order] if c is not None else [],
            "order_matches": [i for i in order if i in truth_order] == truth_order,
            "victims": rows, "later": len(later), "warned_before": sum(r["warned_before"] for r in later),
            "lead_median_s": round(median(leads), 1) if leads else None,
            "all_later_warned_before": bool(later) and all(r["warned_before"] for r in later)})
    return out
