"""SQL of the panels about flows: each read from a roll-up, with its raw twin on ``flows``.

At a hundred million flows a panel scanning ``flows`` takes seconds, so every flow panel reads
a roll-up fed by a materialised view (:mod:`finsa.storage.rollups`, ``flows_1m`` of
:mod:`finsa.storage.schema`) and its time range is rounded to the roll-up's bucket: from the
start of the bucket holding ``from_ms`` to the end of the bucket holding ``to_ms``. Each has a
raw twin (``*_RAW_SQL``): the same question answered exactly from ``flows``, for the tests that
check the roll-up and for the storage benchmark that times both (``Panel.raw_sql``).

Both take the panel parameters ``{from_ms:Int64}``, ``{to_ms:Int64}``, ``{institution:String}``
('' means every institution) and return the same columns.

>>> "FROM flows_1m" in TRAFFIC_PER_MINUTE_SQL, "FROM flows\\n" in TRAFFIC_PER_MINUTE_RAW_SQL
(True, True)
"""

from __future__ import annotations

__all__ = ["TRAFFIC_PER_MINUTE_SQL", "TRAFFIC_PER_MINUTE_RAW_SQL", "TOP_TALKERS_SQL", "TOP_TALKERS_RAW_SQL",
           "SERVICES_SQL", "SERVICES_RAW_SQL", "INGEST_LAG_SQL", "INGEST_LAG_RAW_SQL", "FLOWS_IN_RANGE"]

#: Raw flows started in the range, of the selected institution ('' = all).
FLOWS_IN_RANGE = ("first_seen >= fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC')"
                  " AND first_seen <= fromUnixTimestamp64Milli({to_ms:Int64}, 'UTC')"
                  " AND ({institution:String} = '' OR institution_id = {institution:String})")
_INSTITUTION = "({institution:String} = '' OR institution_id = {institution:String})"
#: An address column as text, IPv4-mapped addresses without their ``::ffff:`` prefix.
_IP_TEXT = "replaceRegexpOne(toString({}), '^::ffff:', '')"

TRAFFIC_PER_MINUTE_SQL = f"""
SELECT toInt64(toUnixTimestamp(minute)) * 1000 AS minute_ms, institution_id,
       sum(flows) AS flows, sum(bytes) AS bytes
FROM flows_1m
WHERE minute >= toStartOfMinute(toDateTime(intDiv({{from_ms:Int64}}, 1000), 'UTC'))
  AND minute <= toDateTime(intDiv({{to_ms:Int64}}, 1000), 'UTC')
  AND {_INSTITUTION}
GROUP BY minute_ms, institution_id
ORDER BY minute_ms, institution_id
""".strip()

TRAFFIC_PER_MINUTE_RAW_SQL = f"""
SELECT intDiv(first_seen_ms, 60000) * 60000 AS minute_ms, institution_id,
       count() AS flows, sum(src2dst_bytes + dst2src_bytes) AS bytes
FROM flows
WHERE {FLOWS_IN_RANGE}
GROUP BY minute_ms, institution_id
ORDER BY minute_ms, institution_id
""".strip()

TOP_TALKERS_RAW_SQL = f"""
SELECT {_IP_TEXT.format("src_ip")} AS source, flows, bytes
FROM (SELECT src_ip, count() AS flows, sum(src2dst_bytes + dst2src_bytes) AS bytes
      FROM flows
      WHERE {FLOWS_IN_RANGE}
      GROUP BY src_ip
      ORDER BY bytes DESC, flows DESC, src_ip
      LIMIT 10)
ORDER BY bytes DESC, flows DESC, src_ip
""".strip()

def _buckets_in_range(bucket: str = "hour", start: str = "toStartOfHour") -> str:
    """Roll-up buckets from the one holding ``from_ms`` to the one holding ``to_ms``."""
    return (f"{bucket} >= {start}(fromUnixTimestamp64Milli({{from_ms:Int64}}, 'UTC'))"
            f" AND {bucket} <= fromUnixTimestamp64Milli({{to_ms:Int64}}, 'UTC') AND {_INSTITUTION}")


#: Ranges longer than this read the daily top-talkers roll-up (rounded to whole days), shorter
#: ones the hourly one.
TALKERS_DAILY_AFTER_MS = 3 * 3_600_000
_SHORT = f"{{to_ms:Int64}} - {{from_ms:Int64}} <= {TALKERS_DAILY_AFTER_MS}"
_LONG = f"{{to_ms:Int64}} - {{from_ms:Int64}} > {TALKERS_DAILY_AFTER_MS}"
#: Flows started in the hours (UTC) holding ``from_ms`` to ``to_ms``: the hourly roll-ups' range.
_HOURS_OF_RANGE = ("first_seen >= toStartOfHour(fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC'))"
                   " AND first_seen < toStartOfHour(fromUnixTimestamp64Milli({to_ms:Int64}, 'UTC')) + INTERVAL 1 HOUR"
                   f" AND {_INSTITUTION}")

#: The ten heaviest sources by bytes (with their ties) of the hourly states, as (address, bytes)
#: tuples: read once (a scalar) by :data:`TOP_TALKERS_SQL` for short ranges, nothing for long ones.
TOP_TALKERS_HOURLY_SQL = f"""SELECT groupArray((src_ip, bytes))
      FROM (SELECT t.1 AS src_ip, t.2 AS bytes
            FROM (SELECT arrayJoin(by_bytes) AS t
                  FROM (SELECT approx_top_sumMerge(1024, 1024)(top) AS by_bytes
                        FROM talkers_top_1h WHERE {_SHORT} AND {_buckets_in_range()}))
            ORDER BY bytes DESC LIMIT 10 WITH TIES)"""

#: Top sources by bytes (then flows, then address) from the heavy-hitter roll-ups, in two
#: branches (one of them false for given parameters: it reads no part):
#:
#: * up to :data:`TALKERS_DAILY_AFTER_MS`, the hourly bytes states give the ten heaviest sources
#:   (with their ties), and their flows are counted in ``flows`` over the same hours -- exact,
#:   and cheap: the source-address projection (:mod:`finsa.storage.search_index`) holds each
#:   source's flows together, and a few hours bound the count;
#: * beyond, the daily states: by bytes, and by flows where a source's flows are its count in
#:   the flows state (that state's smallest count when it is not there, only possible when
#:   approximate), looked up only for the ten heaviest by bytes with their ties.
#:
#: Bytes are exact while each merged state saw at most 1,024 sources, approximate beyond (see
#: :mod:`finsa.storage.rollups`).
TOP_TALKERS_SQL = f"""
WITH ({TOP_TALKERS_HOURLY_SQL}) AS hourly
SELECT {_IP_TEXT.format("src_ip")} AS source, flows, bytes
FROM (SELECT src_ip, flows, bytes
      FROM (SELECT t.1 AS src_ip, t.2 AS bytes FROM (SELECT arrayJoin(hourly) AS t)) AS heaviest
      LEFT JOIN (SELECT src_ip, count() AS flows
                 FROM flows
                 WHERE {_SHORT} AND src_ip IN (SELECT arrayJoin(hourly).1) AND {_HOURS_OF_RANGE}
                 GROUP BY src_ip) AS counted USING (src_ip)
      UNION ALL
      SELECT src_ip, flows, bytes
      FROM (SELECT src_ip, bytes, arrayFirst(x -> x.1 = src_ip, by_flows).2 AS found,
                   if(found > 0, found, arrayMin(arrayMap(x -> x.2, by_flows))) AS flows
            FROM (SELECT t.1 AS src_ip, t.2 AS bytes, by_flows
                  FROM (SELECT arrayJoin(by_bytes) AS t, by_flows
                        FROM (SELECT approx_top_sumMerge(1024, 1024)(top) AS by_bytes,
                                     approx_top_sumMerge(1024, 1024)(top_flows) AS by_flows
                              FROM talkers_top_1d
                              WHERE {_LONG} AND {_buckets_in_range("day", "toStartOfDay")}))
                  ORDER BY bytes DESC LIMIT 10 WITH TIES)))
ORDER BY bytes DESC, flows DESC, src_ip
LIMIT 10
""".strip()

SERVICES_RAW_SQL = f"""
SELECT multiIf(protocol = 6, 'tcp', protocol = 17, 'udp', protocol = 1, 'icmp',
               protocol = 58, 'icmpv6', toString(protocol)) AS proto,
       dst_port AS port, count() AS flows, sum(src2dst_bytes + dst2src_bytes) AS bytes,
       uniqExact(src_ip) AS clients, uniqExact(dst_ip) AS servers
FROM flows
WHERE {FLOWS_IN_RANGE}
GROUP BY proto, port
ORDER BY flows DESC, bytes DESC, proto, port
LIMIT 15
""".strip()
_PROTO = ("multiIf(protocol = 6, 'tcp', protocol = 17, 'udp', protocol = 1, 'icmp', protocol = 58, 'icmpv6', "
          "toString(protocol))")
SERVICES_SQL = f"""
SELECT {_PROTO} AS proto, dst_port AS port, sum(flows) AS flows, sum(bytes) AS bytes,
       uniqCombinedMerge(12)(clients) AS clients, uniqCombinedMerge(12)(servers) AS servers
FROM services_1h
WHERE {_buckets_in_range()}
  AND (protocol, dst_port) IN (SELECT protocol, dst_port FROM services_1h WHERE {_buckets_in_range()}
                               GROUP BY protocol, dst_port
                               ORDER BY sum(flows) DESC, sum(bytes) DESC LIMIT 15 WITH TIES)
GROUP BY protocol, dst_port
ORDER BY flows DESC, bytes DESC, proto, port
LIMIT 15
""".strip()

# Pipeline health from the store itself: how late flows arrive, per minute of their last packet.
# (``first_seen <= to`` adds nothing but lets the raw twin skip later days' partitions.)
INGEST_LAG_RAW_SQL = f"""
SELECT intDiv(last_seen_ms, 60000) * 60000 AS minute_ms, institution_id,
       max(toInt64(toUnixTimestamp(stored_at)) * 1000 - last_seen_ms) AS lag_ms
FROM flows
WHERE last_seen >= fromUnixTimestamp64Milli({{from_ms:Int64}}, 'UTC')
  AND last_seen <= fromUnixTimestamp64Milli({{to_ms:Int64}}, 'UTC')
  AND first_seen <= fromUnixTimestamp64Milli({{to_ms:Int64}}, 'UTC') AND {_INSTITUTION}
GROUP BY minute_ms, institution_id
ORDER BY minute_ms, institution_id
""".strip()

INGEST_LAG_SQL = f"""
SELECT toInt64(toUnixTimestamp(minute)) * 1000 AS minute_ms, institution_id, max(lag_ms) AS lag_ms
FROM ingest_lag_1m
WHERE {_buckets_in_range("minute", "toStartOfMinute")}
GROUP BY minute_ms, institution_id
ORDER BY minute_ms, institution_id
""".strip()
