"""Threat levels of the institutions and of the sector, computed in SQL from recent alerts.

An institution's **threat level** is a number from 1 to 5, computed from the alerts about it whose
``time_ms`` falls in the 15 minutes (:data:`WINDOW_MS`) that end at the query's ``{to_ms:Int64}``.
Each alert counts once (``alerts FINAL``: a redelivered alert repeats its ``alert_id``).

1. **Pressure**: each alert adds ``2 ** (severity - 1)`` points (info 1, low 2, medium 4, high 8,
   critical 16), so one critical alert weighs as much as sixteen informational ones.
   ``log2(1 + pressure)`` keeps a flood of alerts from growing without bound.
2. **Breadth**: alerts from several detectors are more convincing than many from one. The
   pressure term is multiplied by ``1 + 0.25 * (distinct detectors - 1)``, with at most
   :data:`MAX_DETECTORS` detectors counted (factor 1.0 .. 2.0).
3. **Criticality**: the institution's criticality (1 minor .. 5 systemic) scales the result
   by ``0.6 + 0.1 * criticality`` (0.7 .. 1.1): the same attack on a systemic bank ranks higher.

The constants and the formula live in :mod:`finsa.sector.levels` (the sector picture computes the
same alert part every minute); this module renders them as the dashboards' SQL.

The product is the **score**; :data:`LEVEL_THRESHOLDS` cut it into levels: below 1 is level 1
(normal), then 2 guarded, 3 elevated, 4 high, 5 severe. An institution without alerts in the
window has score 0 and level 1. Some examples at criticality 3: one medium alert gives 2.09
(level 3), one critical alert 3.68 (level 4), twenty high alerts from three detectors at a
criticality-4 bank 11.0 (level 5).

The **sector level** is the highest institution level; beside it the criticality-weighted mean
of the levels shows whether the trouble is broad or concentrated.

:func:`reference_score` is the same formula in Python, for documentation and tests only:

>>> reference_score([5], detectors=1, criticality=3)
3.68
>>> level_of(reference_score([5], detectors=1, criticality=3))
4
>>> level_of(reference_score([], detectors=0, criticality=5))
1
"""

from __future__ import annotations

from typing import Sequence

from finsa.sector.levels import (LEVEL_THRESHOLDS, MAX_DETECTORS, WINDOW_MS, alert_score_sql, alert_terms,
                                 level_of, level_sql, severity_points, severity_points_sql)

__all__ = [
    "WINDOW_MS", "MAX_DETECTORS", "LEVEL_THRESHOLDS", "LEVELS", "INSTITUTION_LEVELS_SQL",
    "SECTOR_LEVEL_SQL", "SUBSECTOR_LEVELS_SQL", "reference_score", "level_of",
]

#: level -> (name, colour) shown by the web view and Grafana.
LEVELS: dict[int, tuple[str, str]] = {
    1: ("normal", "#2e9d5b"),
    2: ("guarded", "#3b82c4"),
    3: ("elevated", "#e0b020"),
    4: ("high", "#e86a1c"),
    5: ("severe", "#d7263d"),
}


def reference_score(severities: Sequence[int], detectors: int, criticality: int) -> float:
    """The threat score of alerts with these severities, as the SQL computes it (rounded to 2)."""
    pressure = sum(severity_points(s) for s in severities)
    return round(sum(alert_terms(pressure, detectors, criticality).values()), 2)


_FACTOR_BREAK = "\n          "  # the score's factors one per line, as the provisioned dashboards show them

#: One row per registered institution, the most threatened first: its identity, place, the
#: window's alert figures, ``score`` and ``level``. Parameter: ``{to_ms:Int64}``.
INSTITUTION_LEVELS_SQL = f"""
SELECT
    i.id AS institution_id,
    i.name AS name,
    i.subsector AS subsector,
    i.region AS region,
    i.criticality AS criticality,
    i.latitude AS latitude,
    i.longitude AS longitude,
    a.alerts AS alerts,
    a.max_severity AS max_severity,
    a.detectors AS detectors,
    round({alert_score_sql("a.pressure", "a.detectors", "i.criticality", joiner=_FACTOR_BREAK)}, 2) AS score,
    {level_sql("score")} AS level
FROM institutions AS i
LEFT JOIN (
    SELECT
        institution_id,
        count() AS alerts,
        max(severity) AS max_severity,
        uniqExact(detector) AS detectors,
        sum({severity_points_sql("severity")}) AS pressure
    FROM alerts FINAL
    WHERE time_ms > {{to_ms:Int64}} - {WINDOW_MS} AND time_ms <= {{to_ms:Int64}}
    GROUP BY institution_id
) AS a ON a.institution_id = i.id
ORDER BY level DESC, score DESC, name
SETTINGS join_use_nulls = 0
""".strip()

_LEVELS_NO_SETTINGS = INSTITUTION_LEVELS_SQL.rsplit("SETTINGS", 1)[0].strip()
# The sector figures aggregate the institution rows, renamed so no output alias shadows them.
_PER_INSTITUTION = (f"(SELECT subsector, level AS inst_level, criticality AS inst_criticality, "
                    f"alerts AS inst_alerts FROM ({_LEVELS_NO_SETTINGS}))")
_AGGREGATES = """
    greatest(max(inst_level), 1) AS level,
    if(sum(inst_criticality) = 0, 1,
       round(sum(inst_level * inst_criticality) / sum(inst_criticality), 2)) AS weighted_level,
    countIf(inst_level >= 3) AS elevated,
    count() AS institutions,
    sum(inst_alerts) AS alerts"""

#: One row: the sector's level (highest institution level), the criticality-weighted mean
#: level, how many institutions are elevated (level >= 3), the number of institutions and alerts.
SECTOR_LEVEL_SQL = f"""
SELECT{_AGGREGATES}
FROM {_PER_INSTITUTION}
SETTINGS join_use_nulls = 0
""".strip()

#: One row per subsector (bank, securities, ...): the same figures as the sector row.
SUBSECTOR_LEVELS_SQL = f"""
SELECT subsector,{_AGGREGATES}
FROM {_PER_INSTITUTION}
GROUP BY subsector
ORDER BY level DESC, weighted_level DESC, subsector
SETTINGS join_use_nulls = 0
""".strip()
