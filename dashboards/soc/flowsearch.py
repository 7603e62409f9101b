"""Flow search: a filter (:mod:`finsa.dashboards.soc.filterlang`) over a time range, for one user.

:func:`search_sql` builds the two statements the search runs -- the matching flows, newest
first, and their count per minute for the chart -- from fixed text, the compiled filter and
query parameters only. They run through the user's tenant view (an institution's analyst reads
its own flows, nothing else; every search is in the audit log) with limits: at most
:data:`MAX_ROWS` rows, :data:`MAX_RANGE_MS` of time and :data:`MAX_SECONDS` of execution.

>>> q = parse_request({"q": "dst_port = 22", "from": "1000", "to": "61000"}, now_ms=100_000)
>>> q.limit, q.from_ms, q.to_ms
(500, 1000, 61000)
>>> rows_sql, chart_sql, params = search_sql(q)
>>> "dst_port = {f0:UInt16}" in rows_sql, params["f0"], params["from_ms"]
(True, 22, 1000)

A filter naming only fields of one of the address projections
(:func:`finsa.storage.search_index.projection_fields`) finds the newest matching flows' keys
there first (sorted by that address, so an address filter reads a few granules, not every one
of the range) and then reads only those flows' full rows, by the table's key:

>>> "IN (SELECT institution_id, toStartOfMinute(first_seen), flow_id" in search_sql(
...     FlowQuery("dst_ip in 198.18.0.0/24", 0, 1, 10))[0]
True
>>> "IN (SELECT" in search_sql(FlowQuery("src_ip = 10.0.0.1 or dst_ip = 10.0.0.1", 0, 1, 10))[0]
False
>>> to_csv(["a", "b"], [[1, "x,y"]])
'a,b\\r\\n1,"x,y"\\r\\n'
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from finsa.dashboards.soc.filterlang import FIELDS, FilterError, compile_filter
from finsa.storage.search_index import PROJECTIONS, projection_fields
from finsa.wire import FLOW

__all__ = ["FlowQuery", "parse_request", "search_sql", "to_csv", "MAX_ROWS", "MAX_RANGE_MS", "MAX_SECONDS",
           "RESULT_COLUMNS"]

MAX_ROWS = 10_000
DEFAULT_ROWS = 500
MAX_RANGE_MS = 7 * 24 * 3600 * 1000
DEFAULT_RANGE_MS = 3600 * 1000
MAX_SECONDS = 10
#: Columns of the result table: the flow record's fields, in wire order.
RESULT_COLUMNS = FLOW.names
#: The fields of each address projection: a filter inside one of them searches in two steps.
PROJECTED = [projection_fields(name) for name in PROJECTIONS]
#: A time range on first_seen that prunes partitions and the (institution, minute) key.
_RANGE = ("first_seen >= fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC') "
          "AND first_seen <= fromUnixTimestamp64Milli({to_ms:Int64}, 'UTC')")
_LIMITS = f"SETTINGS max_execution_time = {MAX_SECONDS}, max_threads = 2"


@dataclass(frozen=True)
class FlowQuery:
    """A checked search request."""

    filter: str
    from_ms: int
    to_ms: int
    limit: int


class SearchError(ValueError):
    """A bad request parameter; ``position`` is set when the filter itself is wrong."""

    def __init__(self, message: str, position: int | None = None) -> None:
        self.position = position
        super().__init__(message)


def _int(params: Mapping[str, str], name: str, default: int) -> int:
    text = params.get(name, "")
    if text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise SearchError(f"{name} must be a whole number (ms since the epoch for times)") from None


def parse_request(params: Mapping[str, str], now_ms: int) -> FlowQuery:
    """``q``, ``from``, ``to`` (ms since the epoch) and ``limit`` checked; SearchError when refused."""
    unknown = sorted(set(params) - {"q", "from", "to", "limit", "format"})
    if unknown:
        raise SearchError(f"unknown parameter(s): {', '.join(unknown)}")
    to_ms = _int(params, "to", now_ms)
    from_ms = _int(params, "from", to_ms - DEFAULT_RANGE_MS)
    limit = _int(params, "limit", DEFAULT_ROWS)
    if not 0 <= from_ms <= to_ms:
        raise SearchError("from must be before to")
    if to_ms - from_ms > MAX_RANGE_MS:
        raise SearchError(f"the range is at most {MAX_RANGE_MS // 3_600_000} hours")
    if not 1 <= limit <= MAX_ROWS:
        raise SearchError(f"limit must be between 1 and {MAX_ROWS}")
    text = params.get("q", "")
    try:
        compile_filter(text)
    except FilterError as exc:
        raise SearchError(str(exc), exc.position) from None
    return FlowQuery(text, from_ms, to_ms, limit)


def search_sql(query: FlowQuery) -> tuple[str, str, dict[str, Any]]:
    """(rows SQL, per-minute SQL, parameters) of a checked query."""
    condition, params = compile_filter(query.filter)
    params = {**params, "from_ms": query.from_ms, "to_ms": query.to_ms, "limit": query.limit}
    where = f"WHERE {_RANGE}\n  AND {condition}"
    newest = "ORDER BY first_seen_ms DESC, flow_id\nLIMIT {limit:UInt32}\n"
    if any(_fields_named(condition) <= set(f) for f in PROJECTED):  # keys from a projection, then full rows
        where += (f"\n  AND (institution_id, toStartOfMinute(first_seen), flow_id) IN (SELECT institution_id, "
                  f"toStartOfMinute(first_seen), flow_id FROM flows\n{where}\n{newest})")
    rows = f"SELECT {', '.join(RESULT_COLUMNS)}\nFROM flows\n{where}\n{newest}" + _LIMITS
    chart = ("SELECT intDiv(first_seen_ms, 60000) * 60000 AS minute_ms, count() AS flows, "
             f"sum(src2dst_bytes + dst2src_bytes) AS bytes\nFROM flows\n{where}\n"
             "GROUP BY minute_ms ORDER BY minute_ms\n" + _LIMITS)
    return rows, chart, params


def _fields_named(condition: str) -> set[str]:
    """Flow fields a compiled condition names (its other words are operators and placeholders)."""
    return set(_WORDS.findall(condition)) & set(FIELDS)


_WORDS = re.compile(r"(?<![{:])\b([a-z][a-z0-9_]*)\b")


def to_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """RFC 4180 CSV text (cells starting with = + - @ are prefixed with ' against formula injection)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") else v for v in row])
    return out.getvalue()
