"""A panel's SQL for Grafana's ClickHouse data source (grafana-clickhouse-datasource v4).

Panels (:mod:`finsa.dashboards.panels`) take ClickHouse query parameters. In Grafana the time
range comes from macros the plugin expands before sending the query, and the institution or
entity from dashboard variables that Grafana interpolates:

* ``{from_ms:Int64}`` -> ``toUnixTimestamp64Milli($__fromTime_ms)`` (the plugin turns
  ``$__fromTime_ms`` into ``fromUnixTimestamp64Milli(<ms>)``), ``{to_ms:Int64}`` likewise;
* ``{institution:String}`` -> ``${institution:sqlstring}`` (Grafana quotes the value and doubles
  its single quotes); the variable's "All" value is the custom ``''`` (custom all values are not
  re-formatted by Grafana), so ``'' = ''`` keeps every institution;
* ``{entity:String}`` -> ``${entity:sqlstring}``.

:func:`expand` does what Grafana and the plugin do to such SQL for a given range and variable
values, so tests run the Grafana variant of every panel on a real store.

>>> to_grafana("SELECT 1 WHERE t <= {to_ms:Int64} AND i = {institution:String}")
'SELECT 1 WHERE t <= toUnixTimestamp64Milli($__toTime_ms) AND i = ${institution:sqlstring}'
>>> expand(to_grafana("SELECT {to_ms:Int64}, {institution:String}"), 0, 1000, {"institution": "o'k"})
"SELECT toUnixTimestamp64Milli(fromUnixTimestamp64Milli(1000)), 'o''k'"
"""

from __future__ import annotations

import re
from typing import Mapping

from finsa.errors import FinsaError

__all__ = ["REPLACEMENTS", "ALL_VALUE", "to_grafana", "expand", "variables_used", "GrafanaSqlError"]

#: ClickHouse query parameter -> what the Grafana query says instead.
REPLACEMENTS = {
    "{from_ms:Int64}": "toUnixTimestamp64Milli($__fromTime_ms)",
    "{to_ms:Int64}": "toUnixTimestamp64Milli($__toTime_ms)",
    "{institution:String}": "${institution:sqlstring}",
    "{entity:String}": "${entity:sqlstring}",
}
#: The custom "All" value of a variable, pasted unformatted by Grafana.
ALL_VALUE = "''"
_LEFTOVER = re.compile(r"(?<!\$)\{\w+:\w+\}")
_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(?!__)(\w+)")
_MACRO = re.compile(r"\$__(\w+)")


class GrafanaSqlError(FinsaError):
    """A query has a parameter, macro or variable the Grafana export does not know."""


def to_grafana(sql: str) -> str:
    """``sql`` with its query parameters replaced by Grafana macros and variables."""
    for parameter, replacement in REPLACEMENTS.items():
        sql = sql.replace(parameter, replacement)
    leftover = _LEFTOVER.findall(sql)
    if leftover:
        raise GrafanaSqlError(f"no Grafana form for parameter(s) {', '.join(sorted(set(leftover)))}")
    return sql


def variables_used(sql: str) -> set[str]:
    """Names of the dashboard variables a Grafana query refers to."""
    return {m.group(1) or m.group(3) for m in _VARIABLE.finditer(sql)}


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def expand(sql: str, from_ms: int, to_ms: int, variables: Mapping[str, str]) -> str:
    """``sql`` as Grafana and the ClickHouse plugin send it for this range and these values.

    A variable whose value is ``None`` stands for "All" (:data:`ALL_VALUE`). Unknown macros
    and variables without a value raise :class:`GrafanaSqlError`.
    """
    def variable(m: re.Match) -> str:
        name, fmt = m.group(1) or m.group(3), m.group(2) or ""
        if name not in variables:
            raise GrafanaSqlError(f"variable {name!r} has no value")
        value = variables[name]
        if value is None:
            return ALL_VALUE
        return _quote(value) if fmt in ("sqlstring", "singlequote") else value

    macros = {"fromTime_ms": f"fromUnixTimestamp64Milli({int(from_ms)})",
              "toTime_ms": f"fromUnixTimestamp64Milli({int(to_ms)})",
              "fromTime": f"toDateTime({int(from_ms) // 1000})",
              "toTime": f"toDateTime({int(to_ms) // 1000})"}

    def macro(m: re.Match) -> str:
        if m.group(1) not in macros:
            raise GrafanaSqlError(f"unknown macro $__{m.group(1)}")
        return macros[m.group(1)]

    return _MACRO.sub(macro, _VARIABLE.sub(variable, sql))
