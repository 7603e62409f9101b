"""The panels of the sector threat view, defined once as data.

A :class:`Panel` is a titled SQL query against the store's tables (``flows``, ``alerts``,
``institutions``) plus how to show its result: a visual kind, a unit and thresholds. The
web view (:mod:`finsa.dashboards.webview`) runs and draws them; the Grafana export renders the
same list as dashboard JSON, so nothing here knows about HTML.

Queries take ClickHouse query parameters, never text pasted into SQL: ``{from_ms:Int64}`` and
``{to_ms:Int64}`` bound the time range (ms since the Unix epoch) and ``{institution:String}``
selects one institution ('' means all). :func:`bind` turns the text values of a request into
checked parameters for one panel.

>>> PANELS_BY_ID["latest_alerts"].parameters
{'from_ms': 'Int64', 'to_ms': 'Int64', 'institution': 'String'}
>>> bind(PANELS_BY_ID["sector_threat"], {"to_ms": "1700000000000"}, now_ms=0)
{'to_ms': 1700000000000}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from finsa.dashboards import threat
from finsa.errors import FinsaError
from finsa.wire import SEVERITIES

__all__ = [
    "Panel", "Threshold", "PANELS", "PANELS_BY_ID", "PARAMETERS", "KINDS", "DEFAULT_RANGE_MS",
    "MAX_RANGE_MS", "PanelParameterError", "bind",
]

#: The visual kinds a panel may have.
KINDS = ("stat", "table", "bar", "map", "timeseries")
#: Every query parameter a panel may use, with its ClickHouse type.
PARAMETERS = {"from_ms": "Int64", "to_ms": "Int64", "institution": "String"}
#: Time range shown when a request gives no ``from_ms``.
DEFAULT_RANGE_MS = 60 * 60 * 1000
#: Longest time range a request may ask for.
MAX_RANGE_MS = 31 * 24 * 60 * 60 * 1000
_PLACEHOLDER = re.compile(r"\{(\w+):(\w+)\}")
_INSTITUTION_ID = re.compile(r"^(|[a-z0-9][a-z0-9_-]{0,62})$")
_INTEGER = re.compile(r"^-?[0-9]{1,16}$")


class PanelParameterError(FinsaError):
    """A request's panel parameters were refused (the web view answers 400)."""


@dataclass(frozen=True)
class Threshold:
    """From ``value`` upwards the panel's main value is shown in ``color`` (named ``label``)."""

    value: float
    color: str
    label: str = ""


@dataclass(frozen=True)
class Panel:
    """One panel: what to query and how to show it.

    ``field`` names the result column that thresholds apply to (and a stat shows); ``unit`` is
    a Grafana unit id ("none", "short", "ms", "bytes", ...).
    """

    id: str
    title: str
    sql: str
    kind: str
    description: str
    unit: str = "none"
    field: str = ""
    thresholds: tuple[Threshold, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"panel {self.id}: unknown kind {self.kind!r}")
        for name, type_ in _PLACEHOLDER.findall(self.sql):
            if PARAMETERS.get(name) != type_:
                raise ValueError(f"panel {self.id}: unknown parameter {{{name}:{type_}}}")

    @property
    def parameters(self) -> dict[str, str]:
        """The query parameters the SQL uses, in order of first use, with their types."""
        return dict(_PLACEHOLDER.findall(self.sql))


def bind(panel: Panel, values: Mapping[str, str], now_ms: int) -> dict[str, object]:
    """Checked query parameters for ``panel`` from a request's text ``values``.

    ``to_ms`` defaults to ``now_ms``, ``from_ms`` to an hour earlier, ``institution`` to all.
    Unknown names, non-integers, a reversed or too long range and a malformed institution id
    raise :class:`PanelParameterError`. Only the parameters the panel's SQL uses are returned.
    """
    unknown = sorted(set(values) - set(PARAMETERS))
    if unknown:
        raise PanelParameterError(f"unknown parameter(s): {', '.join(unknown)}")
    to_ms = _integer(values, "to_ms", now_ms)
    from_ms = _integer(values, "from_ms", to_ms - DEFAULT_RANGE_MS)
    if not 0 <= from_ms < to_ms:
        raise PanelParameterError("need 0 <= from_ms < to_ms")
    if to_ms - from_ms > MAX_RANGE_MS:
        raise PanelParameterError(f"time range longer than {MAX_RANGE_MS} ms")
    institution = values.get("institution", "")
    if not _INSTITUTION_ID.match(institution):
        raise PanelParameterError("institution must be an institution id")
    bound = {"from_ms": from_ms, "to_ms": to_ms, "institution": institution}
    return {name: bound[name] for name in panel.parameters}


def _integer(values: Mapping[str, str], name: str, default: int) -> int:
    text = values.get(name)
    if text is None or text == "":
        return default
    if not _INTEGER.match(text):
        raise PanelParameterError(f"{name} must be an integer (ms since the Unix epoch)")
    return int(text)


_LEVEL_THRESHOLDS = tuple(Threshold(float(level), colour, name)
                          for level, (name, colour) in sorted(threat.LEVELS.items()))
#: Severity 1..5 (info .. critical) in the same five colours as the threat levels.
_SEVERITY_THRESHOLDS = tuple(Threshold(float(sev), threat.LEVELS[sev][1], name)
                             for sev, name in sorted(SEVERITIES.items()))

_ALERTS_IN_RANGE = ("time_ms >= {from_ms:Int64} AND time_ms <= {to_ms:Int64}"
                    " AND ({institution:String} = '' OR institution_id = {institution:String})")

_LATEST_ALERTS_SQL = f"""
SELECT a.time_ms AS time_ms, if(i.name = '', a.institution_id, i.name) AS institution,
       a.detector AS detector, a.technique AS technique, a.entity AS entity,
       a.target AS target, a.severity AS severity
FROM (SELECT * FROM alerts FINAL WHERE {_ALERTS_IN_RANGE}
      ORDER BY time_ms DESC, severity DESC LIMIT 50) AS a
LEFT JOIN institutions AS i ON i.id = a.institution_id
ORDER BY time_ms DESC, severity DESC, entity
SETTINGS join_use_nulls = 0
""".strip()

_TOP_SOURCES_SQL = f"""
SELECT entity, uniqExact(institution_id) AS institutions_hit, count() AS alerts,
       arrayStringConcat(arraySort(groupUniqArray(technique)), ' ') AS techniques,
       max(severity) AS max_severity, max(time_ms) AS last_seen_ms
FROM alerts FINAL
WHERE {_ALERTS_IN_RANGE} AND entity != ''
GROUP BY entity
ORDER BY institutions_hit DESC, alerts DESC, max_severity DESC, entity
LIMIT 10
""".strip()

_ALERTS_PER_MINUTE_SQL = f"""
SELECT intDiv(time_ms, 60000) * 60000 AS minute_ms, institution_id, count() AS alerts
FROM alerts FINAL
WHERE {_ALERTS_IN_RANGE}
GROUP BY minute_ms, institution_id
ORDER BY minute_ms, institution_id
""".strip()

#: From the store's per-minute roll-up of flows (flows_1m), cheap over long ranges.
_TRAFFIC_PER_MINUTE_SQL = """
SELECT toInt64(toUnixTimestamp(minute)) * 1000 AS minute_ms, institution_id,
       sum(flows) AS flows, sum(bytes) AS bytes
FROM flows_1m
WHERE minute >= toStartOfMinute(toDateTime(intDiv({from_ms:Int64}, 1000), 'UTC'))
  AND minute <= toDateTime(intDiv({to_ms:Int64}, 1000), 'UTC')
  AND ({institution:String} = '' OR institution_id = {institution:String})
GROUP BY minute_ms, institution_id
ORDER BY minute_ms, institution_id
""".strip()

PANELS: tuple[Panel, ...] = (
    Panel("sector_threat", "Sector threat level", threat.SECTOR_LEVEL_SQL, "stat",
          "Highest institution threat level in the sector over the last 15 minutes, with the "
          "criticality-weighted mean level and how many institutions are elevated (level 3+).",
          field="level", thresholds=_LEVEL_THRESHOLDS),
    Panel("institution_threat", "Institutions", threat.INSTITUTION_LEVELS_SQL, "map",
          "Each institution's threat level (1 normal .. 5 severe) from its alerts of the last 15 "
          "minutes: severity, count and distinct detectors, weighted by criticality.",
          field="level", thresholds=_LEVEL_THRESHOLDS),
    Panel("subsector_threat", "Threat by subsector", threat.SUBSECTOR_LEVELS_SQL, "bar",
          "Highest and criticality-weighted threat level of each subsector.",
          field="level", thresholds=_LEVEL_THRESHOLDS),
    Panel("latest_alerts", "Latest alerts", _LATEST_ALERTS_SQL, "table",
          "The 50 most recent alerts in the time range, newest first.",
          field="severity", thresholds=_SEVERITY_THRESHOLDS),
    Panel("top_sources", "Top attack sources", _TOP_SOURCES_SQL, "table",
          "Entities (usually attacker addresses) alerted on at the most institutions.",
          unit="short", field="institutions_hit"),
    Panel("alerts_per_minute", "Alerts per minute", _ALERTS_PER_MINUTE_SQL, "timeseries",
          "Alerts per minute and institution over the time range.", unit="short", field="alerts"),
    Panel("traffic_per_minute", "Traffic per minute", _TRAFFIC_PER_MINUTE_SQL, "timeseries",
          "Flows started and bytes metered per minute and institution.", unit="bytes", field="bytes"),
)

PANELS_BY_ID: dict[str, Panel] = {p.id: p for p in PANELS}
