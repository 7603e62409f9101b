"""The sector situation report: what the regulator circulates each day or week.

:func:`build_report` reads a store and returns a :class:`Report` (plain data, rendered by
:mod:`finsa.dashboards.report_render`): threat levels at the end of the period with their trend
against the end of the previous period, campaigns and early warnings (with lead times: from a
warning to the first alert of one of its indicators in its audience), top techniques and
sources, and incidents graded by a :class:`~finsa.dashboards.report_grades.Scheme` with their
reporting deadlines. Campaign, warning and source lists run the dashboards' own panel SQL; the
sector tables are read only when they exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from finsa.dashboards import threat
from finsa.dashboards.panels import ALL_PANELS_BY_ID, bind
from finsa.dashboards.report_grades import Scheme, default_scheme

__all__ = ["PERIODS_MS", "Report", "build_report"]

#: Report period -> its length.
PERIODS_MS = {"day": 24 * 3_600_000, "week": 7 * 24 * 3_600_000}
_HOUR_MS = 3_600_000
_RANGE = "time_ms >= {from_ms:Int64} AND time_ms <= {to_ms:Int64}"

_TECHNIQUES_SQL = f"""
SELECT technique, count() AS alerts, uniqExact(institution_id) AS institutions_hit,
       uniqExact(entity) AS sources, max(severity) AS max_severity
FROM alerts FINAL WHERE {_RANGE} AND technique != ''
GROUP BY technique ORDER BY alerts DESC, technique LIMIT 10
"""

_INCIDENTS_SQL = f"""
SELECT a.institution_id AS institution_id, if(any(i.name) = '', a.institution_id, any(i.name)) AS name,
       greatest(any(i.criticality), 1) AS criticality, a.entity AS entity,
       min(a.time_ms) AS first_ms, max(a.time_ms) AS last_ms, count() AS alerts,
       max(a.severity) AS max_severity,
       arrayStringConcat(arraySort(groupUniqArray(a.technique)), ' ') AS techniques,
       arrayStringConcat(arraySort(groupUniqArray(a.detector)), ' ') AS detectors
FROM (SELECT * FROM alerts FINAL WHERE {_RANGE}) AS a
LEFT JOIN institutions AS i ON i.id = a.institution_id
GROUP BY a.institution_id, a.entity
ORDER BY max_severity DESC, alerts DESC, institution_id, entity
LIMIT 500
SETTINGS join_use_nulls = 0
"""

# First alert after each warning about one of its indicators, in the warning's audience.
_LEAD_TIMES_SQL = f"""
SELECT w.warning_id AS warning_id, min(x.time_ms) - any(w.time_ms) AS lead_ms,
       uniqExact(x.institution_id) AS institutions_reached
FROM (SELECT warning_id, time_ms, scope_kind, scope_id,
             arrayJoin(JSONExtract(indicators, 'Array(String)')) AS indicator
      FROM warnings FINAL WHERE {_RANGE}) AS w
INNER JOIN (SELECT a.time_ms AS time_ms, a.entity AS entity, a.institution_id AS institution_id,
                   i.subsector AS subsector, i.region AS region
            FROM (SELECT time_ms, entity, institution_id FROM alerts FINAL
                  WHERE time_ms >= {{from_ms:Int64}}) AS a
            LEFT JOIN institutions AS i ON i.id = a.institution_id) AS x ON x.entity = w.indicator
WHERE x.time_ms >= w.time_ms
  AND (w.scope_kind = 'sector' OR (w.scope_kind = 'institution' AND x.institution_id = w.scope_id)
       OR (w.scope_kind = 'subsector' AND x.subsector = w.scope_id)
       OR (w.scope_kind = 'region' AND x.region = w.scope_id))
GROUP BY w.warning_id
SETTINGS join_use_nulls = 0
"""


@dataclass
class Report:
    """Everything the report shows; rows are plain dicts from the store."""

    period: str
    from_ms: int
    to_ms: int
    sector: dict[str, Any]
    previous_sector: dict[str, Any]
    institutions: list[dict[str, Any]]
    campaigns: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    techniques: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    countries: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    scheme: Scheme = field(default_factory=default_scheme)
    missing_tables: list[str] = field(default_factory=list)


def _tables(store: Any) -> set[str]:
    rows = store.query("SELECT name FROM system.tables WHERE database = currentDatabase()").rows
    return {r[0] for r in rows}


def _panel(store: Any, panel_id: str, from_ms: int, to_ms: int) -> list[dict[str, Any]]:
    panel = ALL_PANELS_BY_ID[panel_id]
    params = bind(panel, {"from_ms": str(from_ms), "to_ms": str(to_ms)}, to_ms)
    return store.query(panel.sql, params).dicts()


def _levels(store: Any, to_ms: int) -> dict[str, dict[str, Any]]:
    return {r["institution_id"]: r for r in store.query(threat.INSTITUTION_LEVELS_SQL, {"to_ms": to_ms}).dicts()}


def _peak_levels(store: Any, from_ms: int, to_ms: int) -> dict[str, int]:
    """Highest recorded level per institution in the period (threat_levels history)."""
    sql = ("SELECT scope_id, max(level) AS peak FROM threat_levels WHERE scope_kind = 'institution' "
           f"AND {_RANGE} GROUP BY scope_id")
    return {r["scope_id"]: int(r["peak"]) for r in store.query(sql, {"from_ms": from_ms, "to_ms": to_ms}).dicts()}


def _institutions(store: Any, from_ms: int, to_ms: int, history: bool) -> list[dict[str, Any]]:
    now, before = _levels(store, to_ms), _levels(store, from_ms)
    peaks = _peak_levels(store, from_ms, to_ms) if history else {}
    out = []
    for inst_id, row in now.items():
        previous = int(before.get(inst_id, {}).get("level", 1))
        level = int(row["level"])
        out.append({**row, "previous_level": previous, "change": level - previous,
                    "peak_level": max(peaks.get(inst_id, level), level)})
    return out


def _incidents(store: Any, from_ms: int, to_ms: int, scheme: Scheme) -> list[dict[str, Any]]:
    rows = store.query(_INCIDENTS_SQL, {"from_ms": from_ms, "to_ms": to_ms}).dicts()
    order = {g.name: n for n, g in enumerate(scheme)}
    for row in rows:
        grade = scheme.grade(int(row["max_severity"]), int(row["criticality"]), int(row["alerts"]))
        row["grade"] = grade.name
        row["deadline_ms"] = int(row["first_ms"] + grade.deadline_hours * _HOUR_MS)
        row["overdue"] = row["deadline_ms"] < to_ms
    rows.sort(key=lambda r: (order[r["grade"]], r["deadline_ms"], r["institution_id"], r["entity"]))
    return rows


def _warnings(store: Any, from_ms: int, to_ms: int) -> list[dict[str, Any]]:
    rows = _panel(store, "early_warnings", from_ms, to_ms)
    leads = {r["warning_id"]: r for r in store.query(_LEAD_TIMES_SQL, {"from_ms": from_ms, "to_ms": to_ms}).dicts()}
    for row in rows:
        lead = leads.get(row["warning_id"])
        row["lead_ms"] = int(lead["lead_ms"]) if lead else None
        row["institutions_reached"] = int(lead["institutions_reached"]) if lead else 0
    return rows


def build_report(store: Any, period: str, to_ms: int, scheme: Scheme | None = None) -> Report:
    """The report for the ``period`` ('day' or 'week') that ends at ``to_ms``."""
    if period not in PERIODS_MS:
        raise ValueError(f"period must be one of {', '.join(PERIODS_MS)}")
    from_ms = to_ms - PERIODS_MS[period]
    scheme = scheme or default_scheme()
    tables = _tables(store)
    institutions = _institutions(store, from_ms, to_ms, "threat_levels" in tables)
    sector = store.query(threat.SECTOR_LEVEL_SQL, {"to_ms": to_ms}).dicts()[0]
    previous = store.query(threat.SECTOR_LEVEL_SQL, {"to_ms": from_ms}).dicts()[0]
    report = Report(period, from_ms, to_ms, sector, previous, institutions, scheme=scheme)
    report.missing_tables = sorted({"campaigns", "warnings", "threat_levels", "alerts_geo_1h"} - tables)
    if "campaigns" in tables:
        report.campaigns = _panel(store, "active_campaigns", from_ms, to_ms)
    if "warnings" in tables:
        report.warnings = _warnings(store, from_ms, to_ms)
    if "alerts_geo_1h" in tables:
        report.countries = _panel(store, "sources_by_country", from_ms, to_ms)
    report.techniques = store.query(_TECHNIQUES_SQL, {"from_ms": from_ms, "to_ms": to_ms}).dicts()
    report.sources = _panel(store, "top_sources", from_ms, to_ms)
    report.incidents = _incidents(store, from_ms, to_ms, scheme)
    return report
