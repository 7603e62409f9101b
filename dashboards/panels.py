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

from finsa.dashboards import flow_panels as fp
from finsa.dashboards import threat
from finsa.errors import FinsaError
from finsa.wire import SEVERITIES

__all__ = [
    "Panel", "Threshold", "PANELS", "PANELS_BY_ID", "PARAMETERS", "KINDS", "DEFAULT_RANGE_MS",
    "MAX_RANGE_MS", "PanelParameterError", "bind", "ALL_PANELS", "ALL_PANELS_BY_ID",
    "BASE_TABLES", "MORE_PANELS", "WEB_PANELS", "WEB_PANELS_BY_ID", "INSTITUTION_READS", "INSTITUTION_SQL",
    "WARNING_OPEN_MS", "placeholders",
]

#: The visual kinds a panel may have. ``matrix`` is a row x column grid of counts (a
#: categorical heatmap); ``heatmap`` is counts per time bucket and category.
KINDS = ("stat", "table", "bar", "map", "timeseries", "heatmap", "matrix")
#: Every query parameter a panel may use, with its ClickHouse type. ``entity`` selects one
#: alerted entity (an attack source) for the campaign view.
PARAMETERS = {"from_ms": "Int64", "to_ms": "Int64", "institution": "String", "entity": "String"}
#: Tables every store has; a panel naming others in ``requires`` only runs once they exist.
BASE_TABLES = ("flows", "alerts", "heartbeats", "institutions", "flows_1m")
#: Time range shown when a request gives no ``from_ms``.
DEFAULT_RANGE_MS = 60 * 60 * 1000
#: Longest time range a request may ask for.
MAX_RANGE_MS = 31 * 24 * 60 * 60 * 1000
_PLACEHOLDER = re.compile(r"\{(\w+):(\w+)\}")
_INSTITUTION_ID = re.compile(r"^(|[a-z0-9][a-z0-9_-]{0,62})$")
_INTEGER = re.compile(r"^-?[0-9]{1,16}$")
_ENTITY = re.compile(r"^[0-9A-Za-z:._/-]{0,100}$")


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
    a Grafana unit id ("none", "short", "ms", "bytes", ...). ``requires`` names tables beyond
    :data:`BASE_TABLES` that the SQL reads (written by later pipeline stages).

    ``raw_sql``, set on panels that read a roll-up, is the raw twin: the same question answered
    from the raw tables (``flows``, ``alerts``), with the same parameters and output columns, to
    check the roll-up against (tests) and to time it (the storage benchmark). Only ``sql`` is
    shown (web view, Grafana, report).
    """

    id: str
    title: str
    sql: str
    kind: str
    description: str
    unit: str = "none"
    field: str = ""
    thresholds: tuple[Threshold, ...] = ()
    requires: tuple[str, ...] = ()
    raw_sql: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"panel {self.id}: unknown kind {self.kind!r}")
        for name, type_ in _PLACEHOLDER.findall(self.sql + self.raw_sql):
            if PARAMETERS.get(name) != type_:
                raise ValueError(f"panel {self.id}: unknown parameter {{{name}:{type_}}}")
        if self.raw_sql and placeholders(self.raw_sql) != self.parameters:
            raise ValueError(f"panel {self.id}: the raw twin must take the parameters of the SQL")

    @property
    def parameters(self) -> dict[str, str]:
        """The query parameters the SQL uses, in order of first use, with their types."""
        return dict(_PLACEHOLDER.findall(self.sql))


def placeholders(sql: str) -> dict[str, str]:
    """The query parameters ``sql`` uses, with their types."""
    return dict(_PLACEHOLDER.findall(sql))


def bind(panel: Panel, values: Mapping[str, str], now_ms: int) -> dict[str, object]:
    """Checked query parameters for ``panel`` from a request's text ``values``.

    ``to_ms`` defaults to ``now_ms``, ``from_ms`` to an hour earlier, ``institution`` to all.
    ``entity`` defaults to ''. Unknown names, non-integers, a reversed or too long range and a
    malformed institution id or entity raise :class:`PanelParameterError`. Only the
    parameters the panel's SQL uses are returned.
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
    entity = values.get("entity", "")
    if not _ENTITY.match(entity):
        raise PanelParameterError("entity must be an address or a plain name")
    bound = {"from_ms": from_ms, "to_ms": to_ms, "institution": institution, "entity": entity}
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
       a.target AS target, a.severity AS severity, a.alert_id AS alert_id
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
    Panel("traffic_per_minute", "Traffic per minute", fp.TRAFFIC_PER_MINUTE_SQL, "timeseries",
          "Flows started and bytes metered per minute and institution (from the per-minute "
          "roll-up: the range is rounded to whole minutes).", unit="bytes", field="bytes",
          raw_sql=fp.TRAFFIC_PER_MINUTE_RAW_SQL),
)

PANELS_BY_ID: dict[str, Panel] = {p.id: p for p in PANELS}

# --- Panels of the Grafana dashboards and the report (the web view shows PANELS only) -------

_LEVELS_NO_SETTINGS = threat.INSTITUTION_LEVELS_SQL.rsplit("SETTINGS", 1)[0].strip()

_INSTITUTION_LEVEL_SQL = f"""
SELECT institution_id, name, level, score, alerts
FROM ({_LEVELS_NO_SETTINGS})
WHERE {{institution:String}} = '' OR institution_id = {{institution:String}}
ORDER BY level DESC, score DESC, name
LIMIT 1
SETTINGS join_use_nulls = 0
""".strip()



_DETECTORS_FIRING_SQL = f"""
SELECT detector, count() AS alerts, max(severity) AS max_severity,
       arrayStringConcat(arraySort(groupUniqArray(technique)), ' ') AS techniques,
       uniqExact(entity) AS entities, max(time_ms) AS last_seen_ms
FROM alerts FINAL
WHERE {_ALERTS_IN_RANGE}
GROUP BY detector
ORDER BY alerts DESC, max_severity DESC, detector
""".strip()

_TECHNIQUE_MATRIX_SQL = f"""
SELECT if(i.subsector = '', 'unknown', i.subsector) AS subsector, a.technique AS technique,
       count() AS alerts
FROM (SELECT institution_id, technique FROM alerts FINAL WHERE {_ALERTS_IN_RANGE}) AS a
LEFT JOIN institutions AS i ON i.id = a.institution_id
GROUP BY subsector, technique
ORDER BY subsector, technique
SETTINGS join_use_nulls = 0
""".strip()

_TECHNIQUES_OVER_TIME_SQL = f"""
SELECT intDiv(time_ms, 300000) * 300000 AS bucket_ms, technique, count() AS alerts
FROM alerts FINAL
WHERE {_ALERTS_IN_RANGE}
GROUP BY bucket_ms, technique
ORDER BY bucket_ms, technique
""".strip()

_ENTITY_FILTER = "entity = {entity:String}"

_SOURCE_SUMMARY_SQL = f"""
SELECT uniqExact(institution_id) AS institutions_hit, count() AS alerts,
       uniqExact(detector) AS detectors,
       arrayStringConcat(arraySort(groupUniqArray(technique)), ' ') AS techniques,
       max(severity) AS max_severity
FROM alerts FINAL
WHERE {_ALERTS_IN_RANGE} AND {_ENTITY_FILTER}
""".strip()

_SOURCE_ALERTS_SQL = f"""
SELECT a.time_ms AS time_ms, a.institution_id AS institution_id,
       if(i.name = '', a.institution_id, i.name) AS institution, a.detector AS detector,
       a.technique AS technique, a.target AS target, a.severity AS severity
FROM (SELECT * FROM alerts FINAL WHERE {_ALERTS_IN_RANGE} AND {_ENTITY_FILTER}) AS a
LEFT JOIN institutions AS i ON i.id = a.institution_id
ORDER BY time_ms DESC, severity DESC, institution_id
LIMIT 200
SETTINGS join_use_nulls = 0
""".strip()

_SOURCE_TIMELINE_SQL = f"""
SELECT intDiv(time_ms, 60000) * 60000 AS minute_ms, institution_id, count() AS alerts
FROM alerts FINAL
WHERE {_ALERTS_IN_RANGE} AND {_ENTITY_FILTER}
GROUP BY minute_ms, institution_id
ORDER BY minute_ms, institution_id
""".strip()

# Tables of the sector layer (finsa.storage.sector_schema): campaigns and warnings are
# ReplacingMergeTrees (read FINAL); threat_levels keeps every evaluation per scope.
_CAMPAIGNS_SQL = """
SELECT campaign_id, title, kind, status, severity, institutions_hit, alerts,
       arrayStringConcat(JSONExtract(techniques, 'Array(String)'), ' ') AS techniques,
       arrayStringConcat(JSONExtract(entities, 'Array(String)'), ' ') AS entities,
       first_seen_ms, last_seen_ms
FROM campaigns FINAL
WHERE last_seen_ms >= {from_ms:Int64} AND first_seen_ms <= {to_ms:Int64}
  AND ({institution:String} = '' OR has(JSONExtract(institutions, 'Array(String)'), {institution:String}))
ORDER BY severity DESC, last_seen_ms DESC, campaign_id
LIMIT 50
""".strip()

_WARNINGS_SQL = """
SELECT time_ms, warning_id, scope_kind, scope_id, severity, title, status, campaign_id
FROM warnings FINAL
WHERE time_ms >= {from_ms:Int64} AND time_ms <= {to_ms:Int64}
  AND ({institution:String} = '' OR scope_kind != 'institution' OR scope_id = {institution:String})
ORDER BY time_ms DESC, severity DESC, warning_id
LIMIT 50
""".strip()

_LEVEL_HISTORY_SQL = """
SELECT intDiv(time_ms, 60000) * 60000 AS minute_ms,
       if(scope_kind = 'sector', 'sector', scope_id) AS scope, max(level) AS level
FROM threat_levels
WHERE time_ms >= {from_ms:Int64} AND time_ms <= {to_ms:Int64}
  AND (({institution:String} = '' AND scope_kind IN ('sector', 'institution'))
       OR (scope_kind = 'institution' AND scope_id = {institution:String}))
GROUP BY minute_ms, scope
ORDER BY minute_ms, scope
""".strip()

#: Attack sources by country, from the sector-wide hourly roll-up (finsa.storage.rollups).
_SOURCES_BY_COUNTRY_SQL = """
SELECT if(country = '', 'unknown', country) AS source_country, uniqExactMerge(alerts) AS alerts,
       uniqExactMerge(institutions) AS institutions_hit, uniqMerge(entities) AS sources
FROM alerts_geo_1h
WHERE hour >= toStartOfHour(fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC'))
  AND hour <= fromUnixTimestamp64Milli({to_ms:Int64}, 'UTC')
GROUP BY source_country
ORDER BY alerts DESC, source_country
LIMIT 20
""".strip()

#: Its raw twin: the country looked up now (the roll-up keeps the one of when the alert arrived).
_SOURCES_BY_COUNTRY_RAW_SQL = """
SELECT if(country = '', 'unknown', country) AS source_country, uniqExact(alert_id) AS alerts,
       uniqExact(institution_id) AS institutions_hit, uniqExact(entity) AS sources
FROM (SELECT alert_id, institution_id, entity,
             dictGetOrDefault('ip_enrichment_dict', 'country', toIPv6OrDefault(entity), '') AS country
      FROM alerts WHERE time_ms >= {from_ms:Int64} AND time_ms <= {to_ms:Int64})
GROUP BY source_country
ORDER BY alerts DESC, source_country
LIMIT 20
""".strip()


# Pipeline health from the store itself: what sensors report.
_SENSORS_SQL = """
SELECT institution_id, sensor_id, max(time_ms) AS last_seen_ms,
       argMax(packets, time_ms) AS packets, argMax(drops, time_ms) AS drops,
       argMax(flows, time_ms) AS flows, argMax(spool_batches, time_ms) AS spool_batches,
       argMax(version, time_ms) AS version
FROM heartbeats
WHERE time_ms <= {to_ms:Int64}
  AND ({institution:String} = '' OR institution_id = {institution:String})
GROUP BY institution_id, sensor_id
ORDER BY drops DESC, institution_id, sensor_id
""".strip()

_COUNT_THRESHOLDS = (Threshold(0.0, "#2e9d5b", "none"), Threshold(1.0, "#e86a1c", "some"))

MORE_PANELS: tuple[Panel, ...] = (
    Panel("institution_level", "Institution threat level", _INSTITUTION_LEVEL_SQL, "stat",
          "The selected institution's threat level now (the highest one when all are selected).",
          field="level", thresholds=_LEVEL_THRESHOLDS),
    Panel("top_talkers", "Top talkers", fp.TOP_TALKERS_SQL, "table",
          "Sources of the most bytes in the institution's flows over the time range (from a roll-up: "
          "up to three hours the range is rounded to whole hours, beyond it to whole days (UTC)).",
          unit="bytes", field="bytes", requires=("talkers_top_1h", "talkers_top_1d"), raw_sql=fp.TOP_TALKERS_RAW_SQL),
    Panel("services", "Services", fp.SERVICES_SQL, "table",
          "Protocol and destination port of the institution's flows, busiest first (from the hourly "
          "roll-up: the range is rounded to whole hours; clients and servers are approximate).",
          unit="short", field="flows", requires=("services_1h",), raw_sql=fp.SERVICES_RAW_SQL),
    Panel("detectors_firing", "Detectors firing", _DETECTORS_FIRING_SQL, "table",
          "Which detectors fired in the time range, how often and how severely.",
          field="max_severity", thresholds=_SEVERITY_THRESHOLDS),
    Panel("technique_matrix", "Techniques by subsector", _TECHNIQUE_MATRIX_SQL, "matrix",
          "Alerts per subsector and MITRE ATT&CK technique over the time range.",
          unit="short", field="alerts"),
    Panel("techniques_over_time", "Techniques over time", _TECHNIQUES_OVER_TIME_SQL, "heatmap",
          "Alerts per five minutes and technique.", unit="short", field="alerts"),
    Panel("source_summary", "Campaign source", _SOURCE_SUMMARY_SQL, "stat",
          "How many institutions the selected source hit, with how many alerts.",
          unit="short", field="institutions_hit"),
    Panel("source_alerts", "Alerts of the source", _SOURCE_ALERTS_SQL, "table",
          "Every alert about the selected source, newest first.",
          field="severity", thresholds=_SEVERITY_THRESHOLDS),
    Panel("source_timeline", "Source activity", _SOURCE_TIMELINE_SQL, "timeseries",
          "Alerts about the selected source per minute and institution.", unit="short",
          field="alerts"),
    Panel("active_campaigns", "Active campaigns", _CAMPAIGNS_SQL, "table",
          "Campaigns (one actor across institutions) active in the time range.",
          requires=("campaigns",)),
    Panel("early_warnings", "Early warnings", _WARNINGS_SQL, "table",
          "Early warnings issued to institutions in the time range, newest first.",
          requires=("warnings",)),
    Panel("level_history", "Threat level history", _LEVEL_HISTORY_SQL, "timeseries",
          "The sector's and each institution's threat level per minute, as recorded.",
          field="level", thresholds=_LEVEL_THRESHOLDS, requires=("threat_levels",)),
    Panel("sources_by_country", "Attack sources by country", _SOURCES_BY_COUNTRY_SQL, "bar",
          "Alerts per country of the attacking address (unknown: private or not an address), from the "
          "hourly roll-up: the range is rounded to whole hours.",
          unit="short", field="alerts", requires=("alerts_geo_1h",), raw_sql=_SOURCES_BY_COUNTRY_RAW_SQL),
    Panel("ingest_lag", "Ingest lag", fp.INGEST_LAG_SQL, "timeseries",
          "Time from a flow's last packet to its storage, worst per minute (of the last packet) and "
          "institution (from the per-minute roll-up: the range is rounded to whole minutes).",
          unit="ms", field="lag_ms", requires=("ingest_lag_1m",), raw_sql=fp.INGEST_LAG_RAW_SQL),
    Panel("sensors", "Sensors", _SENSORS_SQL, "table",
          "Each sensor's latest heartbeat: packets, drops, flows and spooled batches.",
          field="drops", thresholds=_COUNT_THRESHOLDS),
)

#: Every panel: the web view's and the Grafana dashboards' and the report's.
ALL_PANELS: tuple[Panel, ...] = PANELS + MORE_PANELS
ALL_PANELS_BY_ID: dict[str, Panel] = {p.id: p for p in ALL_PANELS}

# --- Panels of the web view beyond PANELS (not in ALL_PANELS: Grafana has its own variants) ----

#: A warning stays open (marked on the map) this long after it was issued, unless withdrawn.
WARNING_OPEN_MS = 24 * 60 * 60 * 1000
_OPEN_WARNINGS = ("SELECT scope_id FROM warnings FINAL WHERE scope_kind = '{kind}' AND status != 'withdrawn'"
                  f" AND time_ms > {{{{to_ms:Int64}}}} - {WARNING_OPEN_MS} AND time_ms <= {{{{to_ms:Int64}}}}")

#: Each institution's level: the latest one the sector layer recorded in threat_levels within
#: the level window, else the alerts-based level of :mod:`finsa.dashboards.threat`; and whether a
#: warning addressed to it, its subsector or its region is open.
_SECTOR_MAP_SQL = f"""
SELECT b.institution_id AS institution_id, b.name AS name, b.subsector AS subsector, b.region AS region,
       b.criticality AS criticality, b.latitude AS latitude, b.longitude AS longitude,
       b.alerts AS alerts, b.max_severity AS max_severity, b.detectors AS detectors,
       if(r.scope_id = '', b.score, round(r.recorded_score, 2)) AS score,
       if(r.scope_id = '', b.level, r.recorded_level) AS level,
       if(r.scope_id = '', 'alerts', 'recorded') AS level_source,
       toUInt8(b.institution_id IN ({_OPEN_WARNINGS.format(kind="institution")})
               OR b.subsector IN ({_OPEN_WARNINGS.format(kind="subsector")})
               OR b.region IN ({_OPEN_WARNINGS.format(kind="region")})) AS open_warning
FROM ({_LEVELS_NO_SETTINGS}) AS b
LEFT JOIN (
    SELECT scope_id, argMax(level, time_ms) AS recorded_level, argMax(score, time_ms) AS recorded_score
    FROM threat_levels
    WHERE scope_kind = 'institution' AND time_ms > {{to_ms:Int64}} - {threat.WINDOW_MS}
      AND time_ms <= {{to_ms:Int64}}
    GROUP BY scope_id
) AS r ON r.scope_id = b.institution_id
ORDER BY level DESC, score DESC, name
SETTINGS join_use_nulls = 0
""".strip()

_MAP_NO_SETTINGS = _SECTOR_MAP_SQL.rsplit("SETTINGS", 1)[0].strip()

#: The sector figures of the map's levels; the sector level is the highest institution level or
#: the sector level the sector layer recorded in the window, whichever is higher.
_SECTOR_LEVEL_SQL = f"""
SELECT greatest(max(inst_level), 1, any(recorded)) AS level,
       if(sum(inst_criticality) = 0, 1,
          round(sum(inst_level * inst_criticality) / sum(inst_criticality), 2)) AS weighted_level,
       countIf(inst_level >= 3) AS elevated, count() AS institutions, sum(inst_alerts) AS alerts,
       countIf(inst_warning = 1) AS warned
FROM (SELECT level AS inst_level, criticality AS inst_criticality, alerts AS inst_alerts,
             open_warning AS inst_warning FROM ({_MAP_NO_SETTINGS})) AS m
CROSS JOIN (SELECT toUInt8(ifNull(max(level), 0)) AS recorded FROM threat_levels
            WHERE scope_kind = 'sector' AND time_ms > {{to_ms:Int64}} - {threat.WINDOW_MS}
              AND time_ms <= {{to_ms:Int64}}) AS s
SETTINGS join_use_nulls = 0
""".strip()

_CAMPAIGN_COLUMNS = """campaign_id, title, severity, status, institutions_hit, {hit} AS hit_in_order,
       arrayStringConcat(JSONExtract(techniques, 'Array(String)'), ' ') AS techniques,
       arrayStringConcat(JSONExtract(entities, 'Array(String)'), ' ') AS sources, alerts,
       first_seen_ms, last_seen_ms"""
_CAMPAIGN_RANGE = "last_seen_ms >= {from_ms:Int64} AND first_seen_ms <= {to_ms:Int64}"
_CAMPAIGN_ORDER = "ORDER BY status = 'active' DESC, severity DESC, last_seen_ms DESC, campaign_id\nLIMIT 50"

#: The regulator's campaigns: institutions hit, by name, in the order they were hit.
_WEB_CAMPAIGNS_SQL = f"""
WITH (SELECT groupArray(id) FROM institutions) AS ids, (SELECT groupArray(name) FROM institutions) AS names
SELECT {_CAMPAIGN_COLUMNS.format(hit="arrayStringConcat(arrayMap(x -> if(indexOf(ids, x) = 0, x, "
                                     "names[indexOf(ids, x)]), JSONExtract(institutions, 'Array(String)')), ' > ')")}
FROM campaigns FINAL
WHERE {_CAMPAIGN_RANGE}
  AND ({{institution:String}} = '' OR has(JSONExtract(institutions, 'Array(String)'), {{institution:String}}))
{_CAMPAIGN_ORDER}
""".strip()

#: An institution's campaigns (those that hit it): how many others, never which.
_TENANT_CAMPAIGNS_SQL = f"""
SELECT {_CAMPAIGN_COLUMNS.format(hit="concat('you and ', toString(institutions_hit - 1), ' other(s)')")}
FROM campaigns FINAL
WHERE {_CAMPAIGN_RANGE}
{_CAMPAIGN_ORDER}
""".strip()

_IN_SCOPE = "scope_id IN (SELECT {column} FROM institutions WHERE id = {{institution:String}})"
_WEB_WARNINGS_SQL = f"""
SELECT time_ms, severity, if(scope_kind = 'sector', 'whole sector', concat(scope_kind, ' ', scope_id)) AS audience,
       title, body AS why, arrayStringConcat(JSONExtract(indicators, 'Array(String)'), ' ') AS indicators,
       status, scope_kind, scope_id, warning_id
FROM warnings FINAL
WHERE time_ms >= {{from_ms:Int64}} AND time_ms <= {{to_ms:Int64}}
  AND ({{institution:String}} = '' OR scope_kind = 'sector'
       OR (scope_kind = 'institution' AND scope_id = {{institution:String}})
       OR (scope_kind = 'subsector' AND {_IN_SCOPE.format(column="subsector")})
       OR (scope_kind = 'region' AND {_IN_SCOPE.format(column="region")}))
ORDER BY time_ms DESC, severity DESC, warning_id
LIMIT 50
""".strip()

_SECTOR_TABLES = ("threat_levels", "warnings")
_P = PANELS_BY_ID
#: What the web view shows, in page order.
WEB_PANELS: tuple[Panel, ...] = (
    Panel("sector_level", "Sector threat level", _SECTOR_LEVEL_SQL, "stat",
          "Highest institution threat level now (recorded by the sector layer, or from the alerts of "
          "the last 15 minutes), the criticality-weighted mean, how many institutions are elevated "
          "(3+) and how many have an open warning.",
          field="level", thresholds=_LEVEL_THRESHOLDS, requires=_SECTOR_TABLES),
    Panel("sector_map", "Institutions", _SECTOR_MAP_SQL, "map",
          "Each institution's threat level (1 normal .. 5 severe): the sector layer's latest recorded "
          "level, else computed from its alerts of the last 15 minutes; marked when a warning for it, "
          "its subsector or its region is open.",
          field="level", thresholds=_LEVEL_THRESHOLDS, requires=_SECTOR_TABLES),
    Panel("campaigns", "Active campaigns", _WEB_CAMPAIGNS_SQL, "table",
          "Campaigns (one actor across institutions) in the time range: institutions hit in order, "
          "techniques, sources, first and last seen.",
          field="severity", thresholds=_SEVERITY_THRESHOLDS, requires=("campaigns",)),
    Panel("warnings", "Early warnings", _WEB_WARNINGS_SQL, "table",
          "Warnings issued in the time range, newest first: audience, why, indicators to block.",
          field="severity", thresholds=_SEVERITY_THRESHOLDS, requires=("warnings",)),
    _P["latest_alerts"], _P["top_sources"], _P["alerts_per_minute"], _P["subsector_threat"],
    _P["traffic_per_minute"],
)
WEB_PANELS_BY_ID: dict[str, Panel] = {p.id: p for p in WEB_PANELS}

#: How an institution's analyst reads each web panel. "own": in its tenant database (its own
#: flows and alerts, the campaigns that hit it, the warnings addressed to it, its subsector, its
#: region or the sector; every other institution is a name without figures). "sector": store-wide,
#: because the result is a sector aggregate (sector and subsector levels). The regulator and the
#: operator read every panel store-wide.
INSTITUTION_READS: dict[str, str] = {
    "sector_level": "sector", "subsector_threat": "sector", "sector_map": "own", "campaigns": "own",
    "warnings": "own", "latest_alerts": "own", "top_sources": "own", "alerts_per_minute": "own",
    "traffic_per_minute": "own",
}
#: Panels whose SQL differs for an institution's analyst (the tenant database hides columns).
INSTITUTION_SQL: dict[str, str] = {"campaigns": _TENANT_CAMPAIGNS_SQL}
