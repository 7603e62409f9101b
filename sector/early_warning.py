"""Early warnings: tell an institution what is coming before it arrives.

Three kinds, each an :class:`EarlyWarning` with a deterministic id:

* ``campaign_spread`` (:class:`SpreadWarner`): once a campaign has hit ``k`` institutions of a
  subsector, every institution of that subsector not hit yet is warned, and so is every
  institution exposing a service of a kind the campaign targeted (asset inventory). The warning
  carries the indicators to block: attacker addresses (highest confidence first), prefixes,
  domains, fingerprints, intel matches. Each (campaign, institution) is warned once, also across
  campaign merges. :meth:`SpreadWarner.lead_times` says how long before its first hit each
  warned institution was told.
* ``forecast`` (:func:`forecast_warnings`): a volume forecast crossing (see
  :mod:`finsa.sector.forecast`); a subsector series warns each of its institutions, a technique
  series warns the whole sector (``institution_id == ""``).
* ``drift`` (:class:`DriftWatch`): each institution keeps a decaying vector of its alert
  techniques. When an institution suffers an incident (an alert of severity >= 4), its vector just
  before it is kept as a *precursor pattern*; another institution whose vector comes within
  ``threshold`` cosine similarity of a pattern is warned that it looks like the lead-up to that
  incident.

A warning goes to one institution and says how many others were hit, never which (issue 15): no
institution id but the warned one appears in its text or evidence.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from finsa.institutions import Registry
from finsa.sector.campaigns import Campaign
from finsa.sector.enrich import AssetMap
from finsa.sector.forecast import Crossing

__all__ = ["EarlyWarning", "SpreadWarner", "DriftWatch", "forecast_warnings", "warning_id", "MAX_INDICATORS"]

MAX_INDICATORS = 200


def warning_id(kind: str, institution: str, subject: str) -> str:
    return "ew-" + hashlib.blake2b(f"{kind}|{institution}|{subject}".encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class EarlyWarning:
    """One warning to one institution ("" = the whole sector)."""

    warning_id: str
    time_ms: int
    institution_id: str
    subsector: str
    kind: str  # campaign_spread | forecast | drift
    severity: int
    why: str
    evidence: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    indicators: tuple[str, ...] = ()

    def row(self) -> dict[str, Any]:
        """A flat row (evidence and indicators as JSON) for the proposed WARNING record."""
        return {"warning_id": self.warning_id, "time_ms": self.time_ms, "institution_id": self.institution_id,
                "subsector": self.subsector, "kind": self.kind, "severity": self.severity, "why": self.why,
                "evidence": json.dumps(self.evidence, sort_keys=True, separators=(",", ":")),
                "indicators": json.dumps(list(self.indicators))}


def campaign_indicators(c: Campaign) -> tuple[str, ...]:
    """What to block for a campaign, most confident attacker addresses first, bounded."""
    addresses = sorted(c.addresses, key=lambda a: (-c.addresses[a], a))
    values = addresses + sorted(c.prefixes) + sorted(c.domains) + sorted(c.fingerprints) + sorted(c.intel)
    return tuple(dict.fromkeys(values))[:MAX_INDICATORS]


class SpreadWarner:
    """``campaign_spread`` warnings; see the module docstring."""

    def __init__(self, registry: Registry, assets: AssetMap | None = None, k: int = 2) -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        self.k = k
        self.assets = assets or AssetMap()
        self.use_registry(registry)
        self.warned: dict[str, dict[str, int]] = {}  # campaign id -> institution -> warning time

    def use_registry(self, registry: Registry) -> None:
        """Subsectors and their members from now on (warnings already issued stay issued)."""
        self.subsector_of = {i.id: i.subsector for i in registry.institution}
        self.members: dict[str, list[str]] = {}
        for inst in registry.institution:
            self.members.setdefault(inst.subsector, []).append(inst.id)

    def _warned_for(self, c: Campaign) -> dict[str, int]:
        mine = self.warned.setdefault(c.campaign_id, {})
        for old in c.merged_from:
            for inst, t in self.warned.pop(old, {}).items():
                mine[inst] = min(t, mine.get(inst, t))
        return mine

    def check(self, c: Campaign) -> list[EarlyWarning]:
        """New warnings for a campaign that just changed (time = its latest alert)."""
        warned = self._warned_for(c)
        targets: dict[str, tuple[str, str]] = {}  # institution -> (who was hit, why it concerns you)
        for sub in sorted(c.subsectors):
            hit = c.hit_in(sub)
            if len(hit) >= self.k:
                for inst in self.members.get(sub, []):
                    targets.setdefault(inst, (f"{len(hit)} {sub} institutions hit", ""))
        if len(c.institutions) >= self.k and c.target_kinds:
            hit_text = f"{len(c.institutions)} institutions hit"
            for inst in self.assets.institutions_exposing(c.target_kinds):
                exposed = sorted(c.target_kinds & self.assets.exposed_kinds(inst))
                targets.setdefault(inst, (hit_text, f"; it attacks {'/'.join(exposed)} services, which you expose"))
        out = []
        indicators = campaign_indicators(c)
        for inst in sorted(targets):
            if inst in c.institutions or inst in warned:
                continue
            warned[inst] = c.last_seen_ms
            minutes = (c.last_seen_ms - c.first_seen_ms) / 60_000
            hit_text, concern = targets[inst]
            why = (f"campaign {c.campaign_id}: {hit_text} in {minutes:.0f} min{concern}; "
                   f"techniques {', '.join(sorted(c.techniques))}; not seen at {inst} yet")
            # how many were hit and when, never which: the warned institution must not learn who else
            evidence = {"campaign_id": c.campaign_id, "institutions_hit": len(c.institutions),
                        "first_hit_ms": min(c.institutions.values()), "latest_hit_ms": max(c.institutions.values()),
                        "techniques": dict(sorted(c.techniques.items())), "alert_count": c.alert_count,
                        "max_severity": c.max_severity}
            out.append(EarlyWarning(warning_id("campaign_spread", inst, c.campaign_id), c.last_seen_ms, inst,
                                    self.subsector_of.get(inst, ""), "campaign_spread",
                                    min(5, max(3, c.max_severity)), why, evidence, indicators))
        return out

    def lead_times(self, c: Campaign) -> dict[str, int]:
        """Institution -> ms between its warning and its first hit, for warned institutions hit later."""
        warned = self._warned_for(c)
        return {i: c.institutions[i] - t for i, t in warned.items() if i in c.institutions}

    def forget(self, live_campaign_ids: Iterable[str]) -> None:
        keep = set(live_campaign_ids)
        self.warned = {c: w for c, w in self.warned.items() if c in keep}


def forecast_warnings(crossing: Crossing, registry: Registry) -> list[EarlyWarning]:
    """Warnings for one forecast crossing (see the module docstring)."""
    scope, _, name = crossing.key.partition(":")
    peak = max(crossing.forecast)
    why = (f"{crossing.key}: {crossing.last_value:.0f} alerts/min now, forecast {peak:.0f}/min; "
           f"crosses {crossing.threshold:.0f}/min in {crossing.steps_to_cross} min")
    evidence = {"series": crossing.key, "last": crossing.last_value, "threshold": crossing.threshold,
                "forecast": [round(v, 2) for v in crossing.forecast], "steps_to_cross": crossing.steps_to_cross}
    severity = 4 if crossing.steps_to_cross <= 5 else 3
    targets: list[tuple[str, str]]
    if scope == "subsector":
        targets = [(i.id, i.subsector) for i in registry.institution if i.subsector == name]
    else:
        targets = [("", "")]
    return [EarlyWarning(warning_id("forecast", inst, f"{crossing.key}|{crossing.time_ms}"), crossing.time_ms,
                         inst, sub, "forecast", severity, why, evidence) for inst, sub in targets]


@dataclass
class _Pattern:
    institution: str
    time_ms: int
    technique: str
    vector: dict[str, float]


def _cosine(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    dot = sum(v * b.get(k, 0.0) for k, v in a.items())
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return dot / norm if norm else 0.0


class DriftWatch:
    """``drift`` warnings; see the module docstring."""

    def __init__(self, registry: Registry, half_life_ms: int = 30 * 60_000, threshold: float = 0.8,
                 min_mass: float = 3.0, min_severity: int = 4, max_patterns: int = 64,
                 pattern_ttl_ms: int = 24 * 3_600_000) -> None:
        self.use_registry(registry)
        self.half_life_ms, self.threshold, self.min_mass = half_life_ms, threshold, min_mass
        self.min_severity, self.max_patterns, self.pattern_ttl_ms = min_severity, max_patterns, pattern_ttl_ms
        self.vectors: dict[str, tuple[int, dict[str, float]]] = {}
        self.patterns: dict[str, _Pattern] = {}
        self.warned: set[tuple[str, str]] = set()

    def use_registry(self, registry: Registry) -> None:
        self.subsector_of = {i.id: i.subsector for i in registry.institution}

    def _decayed(self, inst: str, now_ms: int) -> dict[str, float]:
        t, vec = self.vectors.get(inst, (now_ms, {}))
        factor = 0.5 ** (max(0, now_ms - t) / self.half_life_ms)
        return {k: v * factor for k, v in vec.items() if v * factor > 1e-3}

    def observe(self, alert: Mapping[str, Any]) -> None:
        """Add one alert (in time order); a severe one records its precursor pattern first."""
        inst, t = str(alert["institution_id"]), int(alert["time_ms"])
        tech = str(alert.get("technique") or alert.get("detector") or "?")
        vec = self._decayed(inst, t)
        if int(alert.get("severity", 0)) >= self.min_severity and sum(vec.values()) >= self.min_mass:
            pid = "pat-" + hashlib.blake2b(f"{inst}|{t}|{tech}".encode(), digest_size=6).hexdigest()
            if not any(p.institution == inst and t - p.time_ms < self.half_life_ms for p in self.patterns.values()):
                self.patterns[pid] = _Pattern(inst, t, tech, dict(vec))
                if len(self.patterns) > self.max_patterns:
                    del self.patterns[min(self.patterns, key=lambda p: self.patterns[p].time_ms)]
        vec[tech] = vec.get(tech, 0.0) + 1.0
        self.vectors[inst] = (t, vec)

    def check(self, now_ms: int) -> list[EarlyWarning]:
        self.patterns = {p: v for p, v in self.patterns.items() if now_ms - v.time_ms <= self.pattern_ttl_ms}
        out = []
        for inst in sorted(self.vectors):
            vec = self._decayed(inst, now_ms)
            if sum(vec.values()) < self.min_mass:
                continue
            for pid in sorted(self.patterns):
                pat = self.patterns[pid]
                if pat.institution == inst or (pid, inst) in self.warned:
                    continue
                sim = _cosine(vec, pat.vector)
                if sim < self.threshold:
                    continue
                self.warned.add((pid, inst))
                why = (f"alert mix at {inst} is {sim:.2f} similar to what preceded a {pat.technique} "
                       f"incident at another institution")
                evidence = {"pattern": pid, "incident_ms": pat.time_ms,  # never which institution
                            "incident_technique": pat.technique, "similarity": round(sim, 4),
                            "pattern_vector": {k: round(v, 3) for k, v in sorted(pat.vector.items())},
                            "current_vector": {k: round(v, 3) for k, v in sorted(vec.items())}}
                out.append(EarlyWarning(warning_id("drift", inst, pid), now_ms, inst, self.subsector_of.get(inst, ""),
                                        "drift", 3, why, evidence))
        live = set(self.patterns)
        self.warned = {w for w in self.warned if w[0] in live}
        return out
