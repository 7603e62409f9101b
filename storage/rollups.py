"""Roll-up tables fed by materialised views, and the address enrichment they look up.

Every roll-up is written by a materialised view on insert into ``flows`` or ``alerts`` (so a
batch is rolled up once: the insert deduplication token of a redelivered batch also skips its
roll-up rows) and a TTL (:data:`~finsa.storage.schema.DEFAULT_TTL_DAYS`, a year) counted from ``stored_at``,
when the aggregate row was last written.

Per institution (each tenant reads its own rows):

* ``flows_1m`` and ``flows_1h`` (both made by :func:`finsa.storage.schema.traffic_ddl`): flows,
  bytes, packets (sums, SummingMergeTree) and ``sources`` (distinct source addresses, a
  ``uniqCombined(12)`` sketch, :data:`~finsa.storage.schema.DISTINCT_IP_TYPE`: read
  ``uniqCombinedMerge(12)(sources)``). ``flows_1h``'s view reads what ``flows_1m``'s writes
  (:data:`FLOWS_1H_CASCADE_SELECT`, exact), not every flow.
* ``alerts_1m`` / ``alerts_1h``: per institution x detector x technique x severity. ``alerts``
  is ``uniqExactState(alert_id)`` (read ``uniqExactMerge(alerts)``): the alerts table is a
  ReplacingMergeTree, and an alert re-emitted in another batch (same deterministic id, same
  time) is a second insert that a sum would count twice; the exact set of ids counts it once.

Sector-wide (no institution column: every tenant may read them):

* ``alerts_geo_1h``: alerts per attacker country and ASN x technique x severity, with how many
  institutions were hit. Country and ASN come from ``dictGetOrDefault`` on
  ``ip_enrichment_dict`` (an IP_TRIE dictionary over the ``ip_enrichment`` table the stream
  layer fills, e.g. from geoip2fast) at insert time: the row keeps the enrichment valid when the
  alert arrived. Entities that are not addresses get country '' and ASN 0.
* ``alerts_subsector_1h``: alerts per subsector and region (a LEFT JOIN on ``institutions`` in
  the view; an institution missing from the registry lands in subsector '').

Per institution, for the flow panels (AggregatingMergeTree; TTLs from
:data:`FLOW_ROLLUP_TTL_DAYS` unless :data:`~finsa.storage.schema.DEFAULT_TTL_DAYS` names them):

* ``talkers_top_1h`` / ``talkers_top_1d``: per hour / day, a bounded heavy-hitter state
  (``approx_top_sum``, Space-Saving, :data:`TALKERS_TOP_CAPACITY` counters) of the sources
  weighted by bytes; the daily roll-up has a second state weighted by flows. One row per
  institution and bucket per insert instead of one per source address and hour: the per-source
  ``talkers_1h`` and its daily cascade ``talkers_1d`` cost about 40% of the insert CPU
  (``bench rollups``). Exact for a state that saw at most CAPACITY sources (an institution's
  hour), approximate (over-estimates bounded by the total / CAPACITY) beyond, where the heavy
  hitters of skewed traffic still come out right. Both are fed by ``flows`` (no cascade: a
  day's state built from merged hourly states would add the hourly errors). The hourly roll-up
  has no flows state (each state is ~7% of a 500k-row write): the top-talkers panel counts the
  flows of the ten sources it returns in ``flows`` itself over ranges of up to
  :data:`~finsa.dashboards.flow_panels.TALKERS_DAILY_AFTER_MS` (the source-address projection
  of :mod:`finsa.storage.search_index` reads a few granules per source), exactly;
  ``talkers_top_1h`` of older stores loses its flows state on ``migrate()``
  (:func:`finsa.storage.migrations.talkers_bytes_only_step`). ``talkers_1h`` / ``talkers_1d``
  of older stores lose their views on ``migrate()`` (:data:`RETIRED_ROLLUPS`) and expire by TTL.
* ``services_1h``: per hour, protocol and destination port: ``flows``, ``bytes``, ``clients``
  and ``servers`` (distinct source / destination addresses, ``uniqCombined(12)`` sketches).
* ``ingest_lag_1m``: per minute of the flows' last packet: ``lag_ms``, the worst time from a
  flow's last packet to its storage (``max()``).

The ``alerts_*`` views were checked on chdb 26.9 (dictionaries with a CLICKHOUSE source and IP_TRIE layout, and
JOINs in a materialised view, work in process).

>>> "uniqExactState(alert_id)" in alerts_rollup_view_ddl("1m")
True
"""

from __future__ import annotations

from finsa.storage.schema import (DISTINCT_IP_TYPE, DISTINCT_MERGE, DISTINCT_MERGE_STATE, DISTINCT_STATE,
                                  ROLLUP_STORED_AT, _quote, _table_settings, _ttl, traffic_ddl)

#: Retention of the flow-panel roll-ups (days, from ``stored_at``) until
#: :data:`~finsa.storage.schema.DEFAULT_TTL_DAYS` has entries for them (which then win).
FLOW_ROLLUP_TTL_DAYS = {"services_1h": 365, "ingest_lag_1m": 90, "talkers_top_1h": 90, "talkers_top_1d": 365}

#: The top-talkers states: Space-Saving (``approx_top_sum``) over source addresses with
#: :data:`TALKERS_TOP_CAPACITY` counters per (institution, bucket), one weighted by bytes
#: (``top``, ranks the sources) and, in the daily roll-up only, one by flows (``top_flows``,
#: where the panel reads the flows of the sources ``top`` returned over long ranges). The
#: counters are UInt64: bytes and flows cannot share one sum. Exact while a state has seen at
#: most CAPACITY distinct sources; beyond it a count may be over-estimated by at most the
#: state's total / CAPACITY (the tuples' third field bounds it), and a source missing from
#: ``top_flows`` is given that state's smallest count.
TALKERS_TOP_CAPACITY = 1024
TALKERS_TOP_TYPE = f"AggregateFunction(approx_top_sum({TALKERS_TOP_CAPACITY}, {TALKERS_TOP_CAPACITY}), IPv6, UInt64)"
TALKERS_TOP_STATE = f"approx_top_sumState({TALKERS_TOP_CAPACITY}, {TALKERS_TOP_CAPACITY})"
TALKERS_TOP_MERGE = f"approx_top_sumMerge({TALKERS_TOP_CAPACITY}, {TALKERS_TOP_CAPACITY})"

_BUCKET = {"1m": ("minute", "toStartOfMinute"), "1h": ("hour", "toStartOfHour")}


def flows_1h_ddl(ttl_days: int) -> str:
    return traffic_ddl("1h", ttl_days)


#: ``flows_1h`` rolled up from what ``flows_1m_mv`` writes (a cascade: a few rows per minute and
#: institution instead of every flow). Exact: sums add up, and merging the minutes' distinct
#: sketches gives the hour's sketch (``uniqCombined`` merges are lossless).
FLOWS_1H_CASCADE_SELECT = f"""SELECT toStartOfHour(minute) AS hour, institution_id, sum(flows) AS flows, sum(bytes) AS bytes,
       sum(packets) AS packets, {DISTINCT_MERGE_STATE}(sources) AS sources
FROM flows_1m GROUP BY hour, institution_id"""


def flows_1h_view_ddl() -> str:
    """The view feeding ``flows_1h``: a cascade of ``flows_1m`` (:data:`FLOWS_1H_CASCADE_SELECT`).

    >>> "FROM flows_1m GROUP BY hour" in flows_1h_view_ddl()
    True
    """
    return f"CREATE MATERIALIZED VIEW IF NOT EXISTS flows_1h_mv TO flows_1h AS\n{FLOWS_1H_CASCADE_SELECT}"


_ALERT_MEASURES = """    alerts AggregateFunction(uniqExact, String) COMMENT 'Distinct alert ids: uniqExactMerge(alerts)',
    entities AggregateFunction(uniq, String) COMMENT 'Distinct entities (approx.): uniqMerge(entities)',
    max_score SimpleAggregateFunction(max, Float64) COMMENT 'Highest detector score: max(max_score)',
    """ + ROLLUP_STORED_AT


def alerts_rollup_ddl(resolution: str, ttl_days: int) -> str:
    bucket, _ = _BUCKET[resolution]
    return f"""CREATE TABLE IF NOT EXISTS alerts_{resolution} (
    {bucket} DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)) COMMENT 'Start of the {bucket} (alert time)',
    institution_id LowCardinality(String) COMMENT 'Institution where the activity was seen',
    detector LowCardinality(String) COMMENT 'Detector that fired',
    technique LowCardinality(String) COMMENT 'MITRE ATT&CK technique id',
    severity UInt8 COMMENT '1 info .. 5 critical',
{_ALERT_MEASURES}
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM({bucket})
ORDER BY (institution_id, {bucket}, detector, technique, severity)
{_ttl("stored_at", ttl_days)}{_table_settings()}
COMMENT {_quote(f"Alerts per {bucket}, institution, detector, technique, severity; fed by alerts_{resolution}_mv")}"""


def alerts_rollup_view_ddl(resolution: str) -> str:
    bucket, fn = _BUCKET[resolution]
    return f"""CREATE MATERIALIZED VIEW IF NOT EXISTS alerts_{resolution}_mv TO alerts_{resolution} AS
SELECT {fn}(time) AS {bucket}, institution_id, detector, technique, severity,
       uniqExactState(alert_id) AS alerts, uniqState(entity) AS entities, max(score) AS max_score
FROM alerts GROUP BY {bucket}, institution_id, detector, technique, severity"""


def ip_enrichment_ddl() -> str:
    # Small, fully rewritten by Store.load_ip_enrichment; the dictionary below reads it.
    return """CREATE TABLE IF NOT EXISTS ip_enrichment (
    network String COMMENT 'Address range in CIDR form (IPv4 or IPv6)',
    country LowCardinality(String) COMMENT 'ISO 3166 country code, '''' when unknown',
    asn UInt32 COMMENT 'Autonomous system number, 0 when unknown',
    as_name String COMMENT 'Autonomous system name'
) ENGINE = MergeTree ORDER BY network
COMMENT 'Address range -> country, ASN (filled by the stream layer, e.g. from geoip2fast)'"""


def ip_enrichment_dict_ddl(database: str) -> str:
    return f"""CREATE DICTIONARY IF NOT EXISTS ip_enrichment_dict (
    network String,
    country String DEFAULT '',
    asn UInt32 DEFAULT 0,
    as_name String DEFAULT ''
) PRIMARY KEY network
SOURCE(CLICKHOUSE(TABLE 'ip_enrichment' DB '{database}'))
LAYOUT(IP_TRIE)
LIFETIME(MIN 300 MAX 600)
COMMENT 'ip_enrichment as an IP_TRIE dictionary (reloaded by Store.load_ip_enrichment)'"""


_SECTOR_MEASURES = _ALERT_MEASURES + """,
    institutions AggregateFunction(uniqExact, String) COMMENT 'Institutions hit: uniqExactMerge(institutions)'"""


def alerts_geo_1h_ddl(ttl_days: int) -> str:
    return f"""CREATE TABLE IF NOT EXISTS alerts_geo_1h (
    hour DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)) COMMENT 'Start of the hour (alert time)',
    country LowCardinality(String) COMMENT 'Country of the alerted entity (attacker), '''' unknown',
    asn UInt32 COMMENT 'ASN of the alerted entity, 0 unknown',
    as_name SimpleAggregateFunction(anyLast, String) COMMENT 'AS name',
    technique LowCardinality(String) COMMENT 'MITRE ATT&CK technique id',
    severity UInt8 COMMENT '1 info .. 5 critical',
{_SECTOR_MEASURES}
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, country, asn, technique, severity)
{_ttl("stored_at", ttl_days)}{_table_settings()}
COMMENT 'Sector-wide alerts per hour by attacker country and ASN; fed by alerts_geo_1h_mv'"""


def alerts_geo_1h_view_ddl(database: str) -> str:
    key = "toIPv6OrDefault(entity)"
    get = f"dictGetOrDefault('{database}.ip_enrichment_dict'"
    return f"""CREATE MATERIALIZED VIEW IF NOT EXISTS alerts_geo_1h_mv TO alerts_geo_1h AS
SELECT toStartOfHour(time) AS hour,
       {get}, 'country', {key}, '') AS country,
       {get}, 'asn', {key}, toUInt32(0)) AS asn,
       anyLast({get}, 'as_name', {key}, '')) AS as_name,
       technique, severity,
       uniqExactState(alert_id) AS alerts, uniqState(entity) AS entities, max(score) AS max_score,
       uniqExactState(institution_id) AS institutions
FROM alerts GROUP BY hour, country, asn, technique, severity"""


def alerts_subsector_1h_ddl(ttl_days: int) -> str:
    return f"""CREATE TABLE IF NOT EXISTS alerts_subsector_1h (
    hour DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)) COMMENT 'Start of the hour (alert time)',
    subsector LowCardinality(String) COMMENT 'Subsector of the institution ('''' not in the registry)',
    region LowCardinality(String) COMMENT 'Region of the institution',
    technique LowCardinality(String) COMMENT 'MITRE ATT&CK technique id',
    severity UInt8 COMMENT '1 info .. 5 critical',
{_SECTOR_MEASURES}
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, subsector, region, technique, severity)
{_ttl("stored_at", ttl_days)}{_table_settings()}
COMMENT 'Sector-wide alerts per hour by subsector and region; fed by alerts_subsector_1h_mv'"""


def alerts_subsector_1h_view_ddl() -> str:
    return """CREATE MATERIALIZED VIEW IF NOT EXISTS alerts_subsector_1h_mv TO alerts_subsector_1h AS
SELECT toStartOfHour(a.time) AS hour, i.subsector AS subsector, i.region AS region,
       a.technique AS technique, a.severity AS severity,
       uniqExactState(a.alert_id) AS alerts, uniqState(a.entity) AS entities, max(a.score) AS max_score,
       uniqExactState(a.institution_id) AS institutions
FROM alerts AS a LEFT JOIN institutions AS i ON i.id = a.institution_id
GROUP BY hour, subsector, region, technique, severity
SETTINGS join_use_nulls = 0"""


# --- Roll-ups of the flow panels (top talkers, services, ingest lag) -------------------------

_SUM = "SimpleAggregateFunction(sum, UInt64)"
_TOP_BYTES = (f"top {TALKERS_TOP_TYPE} COMMENT 'Heaviest sources by bytes: {TALKERS_TOP_MERGE}(top)'",
              f"{TALKERS_TOP_STATE}(src_ip, src2dst_bytes + dst2src_bytes) AS top")
_TOP_FLOWS = (f"top_flows {TALKERS_TOP_TYPE} COMMENT 'Heaviest sources by flows: {TALKERS_TOP_MERGE}(top_flows)'",
              f"{TALKERS_TOP_STATE}(src_ip, toUInt64(1)) AS top_flows")
#: name -> (bucket, bucket expression, key columns, measure columns, view's measures, comment)
_FLOW_ROLLUPS = {
    "services_1h": (
        "hour", "toStartOfHour(first_seen)",
        ["protocol UInt8 COMMENT 'IP protocol number'", "dst_port UInt16 COMMENT 'Destination port'"],
        [f"flows {_SUM} COMMENT 'Flows to the service: sum(flows)'",
         f"bytes {_SUM} COMMENT 'Bytes of those flows, both directions: sum(bytes)'",
         f"clients {DISTINCT_IP_TYPE} COMMENT 'Distinct source addresses: {DISTINCT_MERGE}(clients)'",
         f"servers {DISTINCT_IP_TYPE} COMMENT 'Distinct destination addresses: {DISTINCT_MERGE}(servers)'"],
        f"count() AS flows, sum(src2dst_bytes + dst2src_bytes) AS bytes, {DISTINCT_STATE}(src_ip) AS clients, "
        f"{DISTINCT_STATE}(dst_ip) AS servers",
        "Flows per hour, institution, protocol and destination port (services)"),
    "ingest_lag_1m": (
        "minute", "toStartOfMinute(last_seen)", [],
        ["lag_ms SimpleAggregateFunction(max, Int64) COMMENT 'Worst ms from a last packet to storage: max(lag_ms)'"],
        "max(toInt64(toUnixTimestamp(stored_at)) * 1000 - last_seen_ms) AS lag_ms",
        "Worst ingest lag per minute (of the flows' last packet) and institution"),
    "talkers_top_1h": (
        "hour", "toStartOfHour(first_seen)", [],
        [_TOP_BYTES[0]], _TOP_BYTES[1],
        "Heaviest sources per hour and institution (top talkers, a bounded heavy-hitter state)"),
    "talkers_top_1d": (
        "day", "toStartOfDay(first_seen)", [],
        [_TOP_BYTES[0], _TOP_FLOWS[0]], f"{_TOP_BYTES[1]}, {_TOP_FLOWS[1]}",
        "Heaviest sources per day and institution (top talkers over long ranges)"),
}
FLOW_ROLLUPS = tuple(_FLOW_ROLLUPS)
#: Roll-ups whose view reads another roll-up, not ``flows``: name -> (source roll-up, its
#: bucket expression over the source's bucket, the view's measures over the source's columns).
CASCADES: dict[str, tuple[str, str, str]] = {}
#: Roll-ups of older stores whose views ``migrate()`` drops (:data:`RETIRED_VIEWS`): their tables
#: stay readable until their TTL empties them; nothing writes them any more.
RETIRED_ROLLUPS = ("talkers_1h", "talkers_1d")
#: The roll-ups whose view reads ``flows`` (the ones a backfill from stored flows fills).
FLOW_FED_ROLLUPS = tuple(n for n in FLOW_ROLLUPS if n not in CASCADES)
#: Roll-ups holding distinct-count states (columns of :data:`DISTINCT_IP_TYPE`).
SKETCHED_ROLLUPS = {"flows_1m": ("sources",), "flows_1h": ("sources",), "services_1h": ("clients", "servers")}


def flow_rollup_ddl(name: str, ttl_days: int) -> str:
    """``CREATE TABLE`` of one flow-panel roll-up (a name of :data:`FLOW_ROLLUPS`).

    >>> "ORDER BY (institution_id, hour, protocol, dst_port)" in flow_rollup_ddl("services_1h", 365)
    True
    """
    bucket, _, keys, measures, _, comment = _FLOW_ROLLUPS[name]
    columns = [f"{bucket} DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)) COMMENT 'Start of the {bucket}'",
               "institution_id LowCardinality(String) COMMENT 'Institution whose sensor metered the flows'",
               *keys, *measures, ROLLUP_STORED_AT]
    key = ", ".join(["institution_id", bucket] + [k.split()[0] for k in keys])
    body = ",\n    ".join(columns)
    source = CASCADES[name][0] if name in CASCADES else name
    return f"""CREATE TABLE IF NOT EXISTS {name} (
    {body}
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM({bucket})
ORDER BY ({key})
{_ttl("stored_at", ttl_days)}{_table_settings()}
COMMENT {_quote(f"{comment}, fed by {name}_mv" + (f" (on {source})" if source != name else ""))}"""


def flow_rollup_select(name: str, where: str = "", stored_at: bool = False, source: str = "flows") -> str:
    """The ``SELECT`` that feeds ``name``: over ``flows`` its view's (a cascade's view reads its
    source roll-up: ``source=CASCADES[name][0]``), or with ``where`` and ``stored_at`` (the rows'
    latest storage time, so a TTL counts from it) a backfill's.

    >>> flow_rollup_select("talkers_top_1d").splitlines()[1]
    'FROM flows GROUP BY day, institution_id'
    """
    bucket, expression, keys, _, measures, _ = _FLOW_ROLLUPS[name]
    if source != "flows":
        _, expression, measures = CASCADES[name]
    group = ", ".join([bucket, "institution_id"] + [k.split()[0] for k in keys])
    select = ", ".join([f"{expression} AS {bucket}", "institution_id", *[k.split()[0] for k in keys], measures]
                       + (["max(stored_at) AS last_stored_at"] if stored_at else []))
    condition = f" WHERE {where}" if where else ""
    return f"SELECT {select}\nFROM {source}{condition} GROUP BY {group}"


def flow_rollup_columns(name: str) -> list[str]:
    """Columns of ``name`` its view writes, in the order of :func:`flow_rollup_select`."""
    bucket, _, keys, measures, _, _ = _FLOW_ROLLUPS[name]
    return [bucket, "institution_id", *[c.split()[0] for c in keys + measures]]


def flow_rollup_view_ddl(name: str) -> str:
    source = CASCADES[name][0] if name in CASCADES else "flows"
    return f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name}_mv TO {name} AS\n{flow_rollup_select(name, source=source)}"
