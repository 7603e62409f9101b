"""ClickHouse tables of finsa, derived from the wire records (never a second column list).

Every wire field becomes one column: its kind gives the ClickHouse type, ``low_cardinality``
wraps strings in ``LowCardinality``, ``codec`` (or storage's :data:`CODEC_OVERRIDES`) is chained before ``ZSTD(1)`` and
``doc`` becomes the column COMMENT. Two kinds of columns are added by storage itself:

* ``batch_id FixedString(16)``: the wire batch a row came from (idempotent writes key on it);
* ``stored_at DateTime``: when the store wrote the row; TTLs count from it (a capture replayed
  years later must not expire on insert);
* for every ``X_ms`` Int64 time field a ``X DateTime64(3, 'UTC')`` column computed from it,
  so dashboards filter and bucket by real times (``WHERE first_seen >= now() - INTERVAL 1 HOUR``)
  while the exact milliseconds stay as sent: ALIAS in ``flows`` (computed on read, 0 bytes
  stored; :func:`flows_time_alias_step` rebuilds an older store's MATERIALIZED copy),
  MATERIALIZED elsewhere. Neither kind is in ``SELECT *``: name them (``SELECT first_seen, ...``).

>>> col = wire_columns(FLOW)[0]
>>> col.name, col.type
('flow_id', 'UInt64')
>>> [c.name for c in derived_columns(FLOW) if c.expression or c.default]
['first_seen', 'last_seen', 'stored_at']
>>> column_sql(wire_columns(FLOW)[3]).split(" COMMENT")[0]
'institution_id LowCardinality(String) CODEC(ZSTD(1))'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from finsa.wire import ALERT, ARP, CAMPAIGN, EMERGENCY, FLOW, HEARTBEAT, LEVEL, WARNING, Field, RecordType

#: wire kind -> ClickHouse type. IPv4 travels IPv4-mapped, exactly ClickHouse's IPv6 layout.
CLICKHOUSE_TYPES = {"u8": "UInt8", "u16": "UInt16", "u32": "UInt32", "u64": "UInt64", "i64": "Int64",
                    "f64": "Float64", "ip": "IPv6", "str": "String"}

#: record type name -> the table its batches are written to (sector records included).
TABLE_OF_RECORD = {FLOW.name: "flows", ALERT.name: "alerts", HEARTBEAT.name: "heartbeats",
                   CAMPAIGN.name: "campaigns", WARNING.name: "warnings", LEVEL.name: "threat_levels",
                   EMERGENCY.name: "emergencies", ARP.name: "arp_bindings"}
RECORD_OF_TABLE = {"flows": FLOW, "alerts": ALERT, "heartbeats": HEARTBEAT, "campaigns": CAMPAIGN,
                   "warnings": WARNING, "threat_levels": LEVEL, "emergencies": EMERGENCY, "arp_bindings": ARP}

#: Days a row is kept; 0 keeps rows forever. Every TTL counts from ``stored_at`` (roll-ups:
#: when the aggregate row was last written). ``audit_log`` has no entry: it is never expired by finsa.
DEFAULT_TTL_DAYS = {"flows": 30, "alerts": 365, "heartbeats": 30, "arp_bindings": 90, "flows_1m": 365, "flows_1h": 365,
                    "alerts_1m": 365, "alerts_1h": 365, "alerts_geo_1h": 365, "alerts_subsector_1h": 365,
                    "campaigns": 0, "warnings": 0, "threat_levels": 0, "emergencies": 0}
#: How many recent insert blocks a MergeTree table remembers to drop a repeated batch.
DEDUP_WINDOW_BLOCKS = 10_000


@dataclass(frozen=True)
class Column:
    """One ClickHouse column; ``expression`` set means MATERIALIZED from other columns."""

    name: str
    type: str
    comment: str
    codec: str = "ZSTD(1)"
    expression: str = ""
    default: str = ""
    alias: bool = False


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def column_type(f: Field) -> str:
    base = CLICKHOUSE_TYPES[f.kind]
    return f"LowCardinality({base})" if f.low_cardinality else base


#: Storage's own codec for some wire fields, measured on flows (bytes per row, 2M synthetic
#: flows): the times' DoubleDelta 3.58 -> T64 2.34 (the sort key leaves them in random order
#: within a minute, where DoubleDelta's deltas are noise), counters 1.78 -> 1.64.
CODEC_OVERRIDES = {FLOW.name: {"first_seen_ms": "T64", "last_seen_ms": "T64", "src2dst_bytes": "T64",
                               "dst2src_bytes": "T64", "src2dst_packets": "T64", "dst2src_packets": "T64"}}
#: Record types whose DateTime64 time columns are ALIAS (computed on read, nothing stored)
#: instead of MATERIALIZED: flows, where the two copies cost 7 of 31 bytes per row.
ALIAS_TIMES = frozenset({FLOW.name})


def wire_column(f: Field, codec_override: str = "") -> Column:
    chained = codec_override or f.codec
    codec = f"{chained}, ZSTD(1)" if chained else "ZSTD(1)"
    return Column(f.name, column_type(f), f.doc, codec)


def wire_columns(rtype: RecordType) -> list[Column]:
    """The columns written from a batch: one per wire field, then ``batch_id``."""
    overrides = CODEC_OVERRIDES.get(rtype.name, {})
    cols = [wire_column(f, overrides.get(f.name, "")) for f in rtype.fields]
    cols.append(Column("batch_id", "FixedString(16)", "Id of the wire batch the row arrived in"))
    return cols


def time_expression(field_name: str) -> str:
    """The DateTime64 of an ``X_ms`` column: what column ``X`` is computed from."""
    return f"fromUnixTimestamp64Milli({field_name}, 'UTC')"


def time_columns(rtype: RecordType) -> list[Column]:
    """DateTime64 columns computed from every ``*_ms`` Int64 field (ALIAS for :data:`ALIAS_TIMES`)."""
    alias = rtype.name in ALIAS_TIMES
    return [Column(f.name[:-3], "DateTime64(3, 'UTC')", f"{f.name} as a time (UTC)",
                   "" if alias else "DoubleDelta, ZSTD(1)", time_expression(f.name), alias=alias)
            for f in rtype.fields if f.kind == "i64" and f.name.endswith("_ms")]


#: When the store wrote the row. TTLs count from it, not from the traffic's own time, so a
#: capture replayed years later is kept like live traffic instead of expiring on insert.
STORED_AT = Column("stored_at", "DateTime('UTC')", "When the store wrote the row (TTL counts from it)",
                   "DoubleDelta, ZSTD(1)", default="now()")


def derived_columns(rtype: RecordType) -> list[Column]:
    """Every column of a record type's table, in table order."""
    return wire_columns(rtype) + time_columns(rtype) + [STORED_AT]


def column_sql(col: Column) -> str:
    """``name Type [MATERIALIZED|ALIAS expr] CODEC(...) COMMENT '...'``."""
    materialized = f" {'ALIAS' if col.alias else 'MATERIALIZED'} {col.expression}" if col.expression else ""
    if col.default:
        materialized = f" DEFAULT {col.default}"
    codec = f" CODEC({col.codec})" if col.codec else ""
    return f"{col.name} {col.type}{materialized}{codec} COMMENT {_quote(col.comment)}"


def _columns_block(cols: list[Column]) -> str:
    return ",\n    ".join(column_sql(c) for c in cols)


def _ttl(column: str, days: int) -> str:
    return f"TTL {column} + INTERVAL {int(days)} DAY\n" if days > 0 else ""


def _table_settings() -> str:
    return f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW_BLOCKS}"


def flows_ddl(ttl_days: int = DEFAULT_TTL_DAYS["flows"], name: str = "flows") -> str:
    # One partition per day: TTL drops whole days, and time filters prune days cheaply.
    # ORDER BY serves the dashboards' questions: "this institution, this time range" first,
    # then per-minute buckets, then talkers (src_ip) inside a minute for top-N queries.
    # The keys spell out first_seen's expression (a key cannot name an ALIAS column); a filter
    # on first_seen is the same expression, so it still prunes partitions and granules.
    first_seen = time_expression("first_seen_ms")
    return f"""CREATE TABLE IF NOT EXISTS {name} (
    {_columns_block(derived_columns(FLOW))}
) ENGINE = MergeTree
PARTITION BY toDate({first_seen})
ORDER BY (institution_id, toStartOfMinute({first_seen}), src_ip)
{_ttl("stored_at", ttl_days)}{_table_settings()}
COMMENT {_quote(FLOW.doc)}"""


def alerts_ddl(ttl_days: int = DEFAULT_TTL_DAYS["alerts"]) -> str:
    # ReplacingMergeTree keyed on the deterministic alert_id: a re-emitted alert (redelivered
    # batch, replayed window) collapses to one row at merge time. Until then read with FINAL
    # (SELECT ... FROM alerts FINAL) or count(DISTINCT alert_id). institution_id and detector
    # are functions of alert_id, so they may lead the key for per-institution reads.
    # Monthly partitions: an alert id always has the same time_ms, so duplicates share a part.
    return _record_table_ddl("alerts", ALERT, "toYYYYMM(time)", "institution_id, detector, alert_id", ttl_days,
                             engine="ReplacingMergeTree")


def _record_table_ddl(table: str, rtype: RecordType, partition: str, order_by: str, ttl_days: int,
                      engine: str = "MergeTree") -> str:
    """``CREATE TABLE`` of a table holding one wire record's batches (columns derived from it)."""
    return f"""CREATE TABLE IF NOT EXISTS {table} (
    {_columns_block(derived_columns(rtype))}
) ENGINE = {engine}
PARTITION BY {partition}
ORDER BY ({order_by})
{_ttl("stored_at", ttl_days)}{_table_settings()}
COMMENT {_quote(rtype.doc)}"""


def heartbeats_ddl(ttl_days: int = DEFAULT_TTL_DAYS["heartbeats"]) -> str:
    return _record_table_ddl("heartbeats", HEARTBEAT, "toDate(time)", "institution_id, sensor_id, time", ttl_days)


def arp_bindings_ddl(ttl_days: int = DEFAULT_TTL_DAYS["arp_bindings"]) -> str:
    # Forensics asks "which MAC had this address then?": institution, address, time lead the key.
    return _record_table_ddl("arp_bindings", ARP, "toDate(first_seen)", "institution_id, ip, first_seen", ttl_days)


INSTITUTION_COLUMNS = (
    Column("id", "String", "Institution id (the registry's id, institution_id elsewhere)"),
    Column("name", "String", "Display name"),
    Column("subsector", "LowCardinality(String)", "bank, securities, insurance, payment, exchange, other"),
    Column("region", "LowCardinality(String)", "Region of the institution"),
    Column("criticality", "UInt8", "1 minor .. 5 systemic"),
    Column("networks", "Array(String)", "Address ranges the institution owns (CIDR)"),
    Column("latitude", "Nullable(Float64)", "Latitude for the map, NULL when unknown", ""),
    Column("longitude", "Nullable(Float64)", "Longitude for the map, NULL when unknown", ""),
)


def institutions_ddl() -> str:
    # Small and fully rewritten by Store.load_institutions (TRUNCATE + INSERT).
    return f"""CREATE TABLE IF NOT EXISTS institutions (
    {_columns_block(list(INSTITUTION_COLUMNS))}
) ENGINE = MergeTree ORDER BY id
COMMENT 'Institutions of the sector, loaded from the registry file'"""


#: Roll-up rows carry when they were (last) written, so a TTL counts from storage time like the
#: raw tables (a replayed year-old capture is rolled up, not expired on insert). The views do
#: not produce it: the DEFAULT fills it; merges keep the latest.
ROLLUP_STORED_AT = ("stored_at SimpleAggregateFunction(max, DateTime('UTC')) DEFAULT now() "
                    "COMMENT 'When the row was last written (TTL counts from it)'")


#: Distinct source / destination counts in the flow roll-ups: ``uniqCombined(12)``, a
#: HyperLogLog sketch of at most ~3.3 KB a row (exact below a few hundred values, ~1.6% error
#: above). ClickHouse's ``uniq`` keeps up to 65,536 hashes a state: 32 KB a flows_1m row and
#: 244 KB a flows_1h row at 100M flows a day. Read them with ``uniqCombinedMerge(12)(col)``.
DISTINCT_IP_TYPE = "AggregateFunction(uniqCombined(12), IPv6)"
DISTINCT_STATE = "uniqCombinedState(12)"
DISTINCT_MERGE = "uniqCombinedMerge(12)"
#: Merges such sketches into one (a roll-up of a roll-up: ``flows_1h`` from ``flows_1m``).
DISTINCT_MERGE_STATE = "uniqCombinedMergeState(12)"
_BUCKETS = {"1m": ("minute", "toStartOfMinute"), "1h": ("hour", "toStartOfHour")}


def traffic_ddl(resolution: str, ttl_days: int) -> str:
    """``flows_1m`` or ``flows_1h``. SummingMergeTree adds rows of the same key at merge time
    (and merges AggregateFunction columns like AggregatingMergeTree): always read with sum() /
    ``uniqCombinedMerge(12)(sources)`` ... GROUP BY."""
    bucket, _ = _BUCKETS[resolution]
    return f"""CREATE TABLE IF NOT EXISTS flows_{resolution} (
    {bucket} DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)) COMMENT 'Start of the {bucket} (first_seen)',
    institution_id LowCardinality(String) COMMENT 'Institution whose sensor metered the flows',
    flows UInt64 COMMENT 'Flows that started in the {bucket}',
    bytes UInt64 COMMENT 'Bytes of those flows, both directions',
    packets UInt64 COMMENT 'Packets of those flows, both directions',
    sources {DISTINCT_IP_TYPE} COMMENT 'Distinct source addresses (approx.): {DISTINCT_MERGE}(sources)',
    {ROLLUP_STORED_AT}
) ENGINE = SummingMergeTree
PARTITION BY toYYYYMM({bucket})
ORDER BY (institution_id, {bucket})
{_ttl("stored_at", ttl_days)}{_table_settings()}
COMMENT 'Flows per {bucket} and institution, fed by flows_{resolution}_mv; read with sum() / {DISTINCT_MERGE}()'"""


def traffic_columns(resolution: str) -> list[str]:
    """Columns of ``flows_{resolution}`` its view writes, in the order of :func:`traffic_select`."""
    return [_BUCKETS[resolution][0], "institution_id", "flows", "bytes", "packets", "sources"]


def traffic_select(resolution: str, where: str = "", stored_at: bool = False) -> str:
    """The ``SELECT`` over ``flows`` feeding ``flows_{resolution}``: its view's, or with ``where``
    and ``stored_at`` (the flows' latest storage time, so a TTL counts from it) a re-roll's."""
    bucket, fn = _BUCKETS[resolution]
    latest = ", max(stored_at) AS last_stored_at" if stored_at else ""
    condition = f" WHERE {where}" if where else ""
    return f"""SELECT {fn}(first_seen) AS {bucket}, institution_id, count() AS flows,
       sum(src2dst_bytes + dst2src_bytes) AS bytes, sum(src2dst_packets + dst2src_packets) AS packets,
       {DISTINCT_STATE}(src_ip) AS sources{latest}
FROM flows{condition} GROUP BY {bucket}, institution_id"""


def flows_1m_ddl(ttl_days: int = DEFAULT_TTL_DAYS["flows_1m"]) -> str:
    return traffic_ddl("1m", ttl_days)


def flows_1m_view_ddl() -> str:
    return f"CREATE MATERIALIZED VIEW IF NOT EXISTS flows_1m_mv TO flows_1m AS\n{traffic_select('1m')}"


def ingested_batches_ddl() -> str:
    # The ledger of written batches: insert() consults it so a batch redelivered after the
    # dedup window has passed is still skipped, and so insert() can say whether it wrote.
    return """CREATE TABLE IF NOT EXISTS ingested_batches (
    batch_id FixedString(16) COMMENT 'Wire batch id',
    record LowCardinality(String) COMMENT 'Record type: flow, alert, heartbeat',
    rows UInt32 COMMENT 'Rows in the batch',
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'When the store wrote it'
) ENGINE = ReplacingMergeTree
ORDER BY (record, batch_id)
TTL toDateTime(inserted_at) + INTERVAL 400 DAY
COMMENT 'Batches already written (idempotent inserts)'"""


def schema_migrations_ddl() -> str:
    return """CREATE TABLE IF NOT EXISTS schema_migrations (
    version String COMMENT 'Step name, e.g. 0002_create_flows or add_column:flows.x',
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'When the step was applied'
) ENGINE = ReplacingMergeTree ORDER BY version
COMMENT 'Migration steps applied to this store'"""


def add_column_sql(table: str, col: Column, after: str | None) -> str:
    where = f" AFTER {after}" if after else ""
    return f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column_sql(col)}{where}"


# --- upgrade of an older store's flows (registered in finsa.storage.migrations) -------------

_REBUILD = "flows_rebuild"


def _flows_times_materialized(store: Any) -> bool:
    kinds = store._run_query("SELECT default_kind FROM system.columns WHERE database = currentDatabase() "
                             "AND table = 'flows' AND name = 'first_seen'", None).rows
    return bool(kinds) and kinds[0][0] == "MATERIALIZED"


def _flows_ttl_days(store: Any) -> int:
    created = store._run_query("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() "
                               "AND name = 'flows'", None).rows
    found = re.search(r"TTL stored_at \+ toIntervalDay\((\d+)\)", created[0][0] if created else "")
    return int(found.group(1)) if found else 0


def rebuild_flows(store: Any) -> None:
    """Copy ``flows`` into a table made by today's :func:`flows_ddl` (same TTL), then swap them.

    The roll-up views name ``flows`` and follow the swap; the copy is no insert into ``flows``,
    so nothing is rolled up twice. Stored columns only: the ALIAS times are computed.
    """
    stored = [c.name for c in derived_columns(FLOW) if not c.alias]
    have = {row[0] for row in store._run_query(
        "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'flows'", None).rows}
    names = ", ".join(n for n in stored if n in have)
    store._run_command(f"DROP TABLE IF EXISTS {_REBUILD} SYNC")
    store._run_command(flows_ddl(_flows_ttl_days(store), name=_REBUILD))
    store._run_command(f"INSERT INTO {_REBUILD} ({names}) SETTINGS insert_deduplicate = 0 "
                       f"SELECT {names} FROM flows")
    store._run_command(f"EXCHANGE TABLES flows AND {_REBUILD}")
    store._run_command(f"DROP TABLE {_REBUILD} SYNC")


def flows_time_alias_step(version: str) -> Any:
    """Migration step: a ``flows`` whose ``first_seen``/``last_seen`` are MATERIALIZED (7 bytes a
    row) is rebuilt with them as ALIAS and with :data:`CODEC_OVERRIDES`, keeping every row."""
    from finsa.storage.migrations import Step

    return Step(version, "flows: times as ALIAS, storage codecs (rebuild)", _flows_times_materialized,
                rebuild_flows)
