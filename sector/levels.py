"""Threat levels 1-5 per institution, subsector, region and the whole sector, with their reasons.

This module is the one home of the level scale and of the alert formula: :data:`LEVEL_THRESHOLDS`,
:func:`level_of` and :func:`alert_terms` in Python, :func:`level_sql`, :func:`alert_score_sql` and
:func:`severity_points_sql` render the same in ClickHouse SQL for the dashboards
(:mod:`finsa.dashboards.threat`), so the picture and the panels cannot drift apart.

An institution's **score** is a sum of named contributions (points), recomputed every minute of
flow time; :data:`LEVEL_THRESHOLDS` cut it (below 1: level 1 normal, 2 guarded, 3 elevated,
4 high, from 5: severe).

* ``alerts``: ``log2(1 + pressure)``, pressure = sum of ``2 ** (severity - 1)`` over the alerts of
  the last ``window_ms`` (:data:`WINDOW_MS`, 15 min); ``breadth``: ``alerts * 0.25 * (distinct
  detectors - 1)`` (at most :data:`MAX_DETECTORS`); ``criticality``: ``(alerts + breadth) *
  (0.1 * criticality - 0.4)``. These three add up to exactly the SQL score of the dashboards.
* ``critical_assets``: ``0.5 * (c - 3)`` when the window's alerts hit a known asset of
  criticality ``c >= 4``.
* ``campaign``: 1 when the institution is in an active multi-institution campaign (+0.5 when the
  campaign spans 3 or more institutions).
* ``warning_campaign_spread`` 1.5, ``warning_forecast`` 0.5, ``warning_drift`` 1.0: an early
  warning of that kind addressed to it (or to the whole sector, for forecasts) in the last
  ``warning_ttl_ms``.
* ``provider``: 1.5 when a provider it depends on had a pressure >= 8 (one high alert) in the window.
* ``emergency``: 2 while it is dark or a sensor's heartbeats are lost.

A subsector, a region and the sector take the highest score of their institutions
(``max_institution``) plus ``0.5`` per further institution at level 3 or more, at most 2
(``elevated_institutions``). Levels fall back by themselves as alerts leave the window and
warnings expire.

>>> level_of(0.5), level_of(2.0), level_of(7.0)
(1, 3, 5)
>>> round(sum(alert_terms(severity_points(5), detectors=1, criticality=3).values()), 2)
3.68
>>> level_sql("s")
'toUInt8(multiIf(s >= 5.0, 5, s >= 3.5, 4, s >= 2.0, 3, s >= 1.0, 2, 1))'
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from finsa.institutions import Registry
from finsa.sector.campaigns import Campaign
from finsa.sector.early_warning import EarlyWarning
from finsa.sector.emergencies import Emergency
from finsa.sector.enrich import ProviderMap

__all__ = ["LevelRow", "ThreatLevels", "level_of", "level_sql", "alert_terms", "alert_score_sql",
           "severity_points", "severity_points_sql", "LEVEL_THRESHOLDS", "WARNING_POINTS", "WINDOW_MS",
           "MAX_DETECTORS"]

#: (lowest score, level), highest first; a score below every bound is level 1.
LEVEL_THRESHOLDS: tuple[tuple[float, int], ...] = ((5.0, 5), (3.5, 4), (2.0, 3), (1.0, 2))
#: Alerts younger than this count towards the current level.
WINDOW_MS = 15 * 60_000
#: Distinct detectors counted for the breadth term.
MAX_DETECTORS = 5
#: Breadth: each further distinct detector adds this share of the alerts term.
BREADTH_PER_DETECTOR = 0.25
#: Criticality c (1 minor .. 5 systemic) scales the alert part by ``BASE + STEP * c`` (0.7 .. 1.1).
CRITICALITY_BASE, CRITICALITY_STEP = 0.6, 0.1
#: Severities are clamped to 1..MAX_SEVERITY before they weigh ``2 ** (severity - 1)``.
MAX_SEVERITY = 5
WARNING_POINTS = {"campaign_spread": 1.5, "forecast": 0.5, "drift": 1.0}
PROVIDER_PRESSURE = 8.0


def level_of(score: float) -> int:
    """Threat level (1..5) of a score."""
    return next((level for bound, level in LEVEL_THRESHOLDS if score >= bound), 1)


def level_sql(score: str) -> str:
    """:func:`level_of` as a ClickHouse expression of the SQL expression ``score``."""
    cases = ", ".join(f"{score} >= {bound}, {level}" for bound, level in LEVEL_THRESHOLDS)
    return f"toUInt8(multiIf({cases}, 1))"


def severity_points(severity: int) -> float:
    """Pressure one alert adds: ``2 ** (severity - 1)`` (info 1, low 2, medium 4, high 8, critical 16)."""
    return 2.0 ** (min(max(int(severity), 1), MAX_SEVERITY) - 1)


def severity_points_sql(severity: str) -> str:
    """:func:`severity_points` as a ClickHouse expression."""
    return f"pow(2, least(greatest(toInt16({severity}), 1), {MAX_SEVERITY}) - 1)"


def alert_terms(pressure: float, detectors: int, criticality: int) -> dict[str, float]:
    """The alert part of a score as named terms (alerts, breadth, criticality); {} without alerts."""
    alerts = math.log2(1 + pressure)
    if not alerts:
        return {}
    breadth = alerts * BREADTH_PER_DETECTOR * (min(max(detectors, 1), MAX_DETECTORS) - 1)
    return {"alerts": alerts, "breadth": breadth,
            "criticality": (alerts + breadth) * (CRITICALITY_STEP * criticality - (1 - CRITICALITY_BASE))}


def alert_score_sql(pressure: str, detectors: str, criticality: str, joiner: str = " ") -> str:
    """The sum of :func:`alert_terms` as a ClickHouse expression (its factors joined by ``joiner``)."""
    factors = (f"log2(1 + {pressure})",
               f"(1 + {BREADTH_PER_DETECTOR} * (least(greatest({detectors}, 1), {MAX_DETECTORS}) - 1))",
               f"({CRITICALITY_BASE} + {CRITICALITY_STEP} * {criticality})")
    return f"{joiner}* ".join(factors)


@dataclass(frozen=True)
class LevelRow:
    """One level at one minute: scope institution|subsector|region|sector, key its id/name."""

    time_ms: int
    scope: str
    key: str
    level: int
    score: float
    contributions: dict[str, float] = field(default_factory=dict, hash=False, compare=False)

    def row(self) -> dict[str, Any]:
        return {"time_ms": self.time_ms, "scope": self.scope, "key": self.key, "level": self.level,
                "score": self.score, "contributions": json.dumps(self.contributions, sort_keys=True)}


@dataclass
class _Minute:
    pressure: float = 0.0
    detectors: set[str] = field(default_factory=set)
    asset_criticality: int = 0


class ThreatLevels:
    """Per-minute alert pressure per institution and provider, and the level computation."""

    def __init__(self, registry: Registry, providers: ProviderMap | None = None, window_ms: int = WINDOW_MS,
                 step_ms: int = 60_000, warning_ttl_ms: int = 60 * 60_000, history_len: int = 240) -> None:
        self.use_registry(registry, providers or ProviderMap())
        self.window_ms, self.step_ms, self.warning_ttl_ms = window_ms, step_ms, warning_ttl_ms
        self.minutes: dict[str, dict[int, _Minute]] = {}  # institution -> minute -> pressure
        self.provider_minutes: dict[str, dict[int, float]] = {}
        self.warnings: dict[str, dict[str, int]] = {}  # institution ("" = all) -> kind -> time
        self.history: dict[tuple[str, str], deque] = {}
        self.history_len = history_len

    def use_registry(self, registry: Registry, providers: ProviderMap | None = None) -> None:
        """Institutions (and providers, when given) from now on; the pressure history stays."""
        self.institutions = {i.id: i for i in registry.institution}
        if providers is not None:
            self.providers = providers
        self.depends_on: dict[str, list[str]] = {}
        for pid, p in self.providers.providers.items():
            for inst in p.dependents:
                self.depends_on.setdefault(inst, []).append(pid)

    def observe(self, alert: Mapping[str, Any]) -> None:
        """Add one enriched alert row."""
        t = int(alert["time_ms"])
        minute = t // self.step_ms
        points = severity_points(int(alert.get("severity", 1)))
        m = self.minutes.setdefault(str(alert["institution_id"]), {}).setdefault(minute, _Minute())
        m.pressure += points
        if len(m.detectors) < MAX_DETECTORS:
            m.detectors.add(str(alert.get("detector", "")))
        m.asset_criticality = max(m.asset_criticality, int(alert.get("target_criticality", 0) or 0))
        provider = alert.get("provider")
        if provider:
            pm = self.provider_minutes.setdefault(str(provider), {})
            pm[minute] = pm.get(minute, 0.0) + points

    def note_warning(self, w: EarlyWarning) -> None:
        self.warnings.setdefault(w.institution_id, {})[w.kind] = max(
            w.time_ms, self.warnings.get(w.institution_id, {}).get(w.kind, w.time_ms))

    def _prune(self, now_ms: int) -> None:
        oldest = (now_ms - self.window_ms) // self.step_ms
        tables: list[dict[int, Any]] = [*self.minutes.values(), *self.provider_minutes.values()]
        for table in tables:
            for minute in [m for m in table if m < oldest]:
                del table[minute]
        for kinds in self.warnings.values():
            for kind in [k for k, t in kinds.items() if now_ms - t > self.warning_ttl_ms]:
                del kinds[kind]

    def _window(self, inst: str, now_ms: int) -> tuple[float, int, int]:
        first = (now_ms - self.window_ms) // self.step_ms
        last = now_ms // self.step_ms
        pressure, detectors, crit = 0.0, set(), 0
        for minute, m in self.minutes.get(inst, {}).items():
            if first < minute <= last:
                pressure += m.pressure
                detectors |= m.detectors
                crit = max(crit, m.asset_criticality)
        return pressure, min(len(detectors), MAX_DETECTORS), crit

    def institution_score(self, inst: str, now_ms: int, in_campaign: Mapping[str, int],
                          emergencies: Mapping[str, Sequence[Emergency]]) -> dict[str, float]:
        pressure, detectors, asset_crit = self._window(inst, now_ms)
        crit = self.institutions[inst].criticality if inst in self.institutions else 3
        parts: dict[str, float] = {}
        parts.update(alert_terms(pressure, detectors, crit))
        if asset_crit >= 4:
            parts["critical_assets"] = 0.5 * (asset_crit - 3)
        if inst in in_campaign:
            parts["campaign"] = 1.0 + (0.5 if in_campaign[inst] >= 3 else 0.0)
        for kind, t in {**self.warnings.get("", {}), **self.warnings.get(inst, {})}.items():
            if now_ms - t <= self.warning_ttl_ms:
                parts[f"warning_{kind}"] = WARNING_POINTS.get(kind, 0.5)
        first = (now_ms - self.window_ms) // self.step_ms
        for pid in self.depends_on.get(inst, []):
            if sum(p for m, p in self.provider_minutes.get(pid, {}).items() if m > first) >= PROVIDER_PRESSURE:
                parts["provider"] = 1.5
        if any(e.kind in ("dark_flows", "heartbeat_lost") for e in emergencies.get(inst, ())):
            parts["emergency"] = 2.0
        return {k: round(v, 4) for k, v in parts.items() if v}

    def compute(self, now_ms: int, campaigns: Iterable[Campaign] = (),
                emergencies: Mapping[str, Sequence[Emergency]] | None = None) -> list[LevelRow]:
        """Level rows of every institution, subsector, region and the sector at ``now_ms``."""
        self._prune(now_ms)
        in_campaign: dict[str, int] = {}
        for c in campaigns:
            if now_ms - c.last_seen_ms <= self.window_ms * 4:
                for inst in c.institutions:
                    in_campaign[inst] = max(in_campaign.get(inst, 0), len(c.institutions))
        rows = []
        for inst in sorted(set(self.institutions) | set(self.minutes)):
            parts = self.institution_score(inst, now_ms, in_campaign, emergencies or {})
            score = round(sum(parts.values()), 4)
            rows.append(LevelRow(now_ms, "institution", inst, level_of(score), score, parts))
        groups: dict[tuple[str, str], list[LevelRow]] = {}
        for r in rows:
            meta = self.institutions.get(r.key)
            for scope, key in (("subsector", meta.subsector if meta else "unknown"),
                               ("region", meta.region if meta else "unknown"), ("sector", "sector")):
                groups.setdefault((scope, key), []).append(r)
        for (scope, key), members in sorted(groups.items()):
            rows.append(self._aggregate(now_ms, scope, key, members))
        for r in rows:
            self.history.setdefault((r.scope, r.key), deque(maxlen=self.history_len)).append(r)
        return rows

    @staticmethod
    def _aggregate(now_ms: int, scope: str, key: str, members: list[LevelRow]) -> LevelRow:
        top = max(members, key=lambda r: (r.score, r.key))
        elevated = sum(1 for r in members if r.level >= 3)
        parts = {f"max_institution:{top.key}": top.score} if top.score else {}
        if elevated > 1:
            parts["elevated_institutions"] = min(2.0, 0.5 * (elevated - 1))
        score = round(sum(parts.values()), 4)
        return LevelRow(now_ms, scope, key, level_of(score), score, parts)
