"""The per-source top-talkers roll-ups finsa shipped before the heavy-hitter states, for
``bench rollups`` to measure against (not used by finsa itself).

``talkers_1h`` had a row per (institution, hour, source address) with summed flows and bytes,
and ``talkers_1d`` the same per day, fed from ``talkers_1h`` by a cascaded view. The panel read
the hourly table up to three hours and the daily one beyond.

>>> len(BEFORE_DDL), "talkers_1d" in BEFORE_PANEL_SQL
(4, True)
"""

from __future__ import annotations

__all__ = ["BEFORE_DDL", "BEFORE_PANEL_SQL", "BEFORE_VIEWS"]

_SUM = "SimpleAggregateFunction(sum, UInt64)"
_TABLE = """CREATE TABLE {name} ({bucket} DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    institution_id LowCardinality(String), src_ip IPv6, flows {sum}, bytes {sum},
    stored_at SimpleAggregateFunction(max, DateTime('UTC')))
ENGINE = AggregatingMergeTree PARTITION BY toYYYYMM({bucket}) ORDER BY (institution_id, {bucket}, src_ip)"""
BEFORE_VIEWS = ("talkers_1h", "talkers_1d")
BEFORE_DDL = (
    _TABLE.format(name="talkers_1h", bucket="hour", sum=_SUM),
    _TABLE.format(name="talkers_1d", bucket="day", sum=_SUM),
    """CREATE MATERIALIZED VIEW talkers_1h_mv TO talkers_1h AS
SELECT toStartOfHour(first_seen) AS hour, institution_id, src_ip, count() AS flows,
       sum(src2dst_bytes + dst2src_bytes) AS bytes, max(stored_at) AS stored_at
FROM flows GROUP BY hour, institution_id, src_ip""",
    """CREATE MATERIALIZED VIEW talkers_1d_mv TO talkers_1d AS
SELECT toStartOfDay(hour) AS day, institution_id, src_ip, sum(flows) AS flows, sum(bytes) AS bytes,
       max(stored_at) AS stored_at
FROM talkers_1h GROUP BY day, institution_id, src_ip""",
)
_RANGE = ("{b} >= {f}(fromUnixTimestamp64Milli({{from_ms:Int64}}, 'UTC')) AND {b} <= "
          "fromUnixTimestamp64Milli({{to_ms:Int64}}, 'UTC') AND ({{institution:String}} = '' "
          "OR institution_id = {{institution:String}})")
_TOP = """SELECT src_ip, sum(flows) AS flows, sum(bytes) AS bytes FROM {table}
      WHERE {cond} AND {range} GROUP BY src_ip ORDER BY bytes DESC, flows DESC, src_ip LIMIT 10"""
BEFORE_PANEL_SQL = f"""
SELECT replaceRegexpOne(toString(src_ip), '^::ffff:', '') AS source, flows, bytes
FROM ({_TOP.format(table="talkers_1h", cond="{to_ms:Int64} - {from_ms:Int64} <= 10800000",
                   range=_RANGE.format(b="hour", f="toStartOfHour"))}
      UNION ALL
      {_TOP.format(table="talkers_1d", cond="{to_ms:Int64} - {from_ms:Int64} > 10800000",
                   range=_RANGE.format(b="day", f="toStartOfDay"))})
ORDER BY bytes DESC, flows DESC, src_ip
""".strip()
