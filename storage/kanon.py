"""k-anonymity of the sector aggregates an institution reads.

An aggregate over a group of institutions (a subsector, a subsector and region, the attackers of
one hour) tells an institution about the others only if the group is large enough: with one
insurer in the sector, "insurance: 2 alerts" is that insurer's figure. Every sector aggregate
shown to an institution is therefore computed over groups of at least ``k`` institutions
(:func:`k_anonymity`, default 3, ``FINSA_K_ANONYMITY`` to change it):

* :func:`merge_groups` maps each registry group (a subsector, or a (subsector, region) pair) to the
  group it is shown in: itself when it has ``k`` institutions or more, else merged with the other
  small groups (``insurance+payment``), and a merged group still smaller than ``k`` is folded into
  the smallest large group. Nothing is left out, so no total minus the shown rows gives a small
  group back; when the whole sector has fewer than ``k`` institutions nothing is shown.
* :func:`subsector_view_sql` and :func:`geo_view_sql` are the tenant views of
  ``alerts_subsector_1h`` and ``alerts_geo_1h``: final numbers (never the mergeable
  ``uniqExact`` states, which would answer "is institution X in this group"), over merged groups;
  attacker rows seen at fewer than ``k`` institutions are merged into one ``(other)`` row per hour,
  left out when that row too has fewer than ``k``.

>>> merge_groups({("bank",): 5, ("insurance",): 1, ("payment",): 1, ("exchange",): 3}, k=3)
{('bank',): ('bank',), ('exchange',): ('exchange+insurance+payment',), ('insurance',): ('exchange+insurance+payment',), ('payment',): ('exchange+insurance+payment',)}
>>> merge_groups({("bank",): 2}, k=3)
{('bank',): None}

A dashboard query written for the store-wide roll-ups merges their sketch states
(``uniqExactMerge(alerts)``); over a tenant view, which holds final numbers, it would fail.
:func:`over_final_numbers` rewrites it to read those numbers: ``alerts`` added up (each alert
is in one row, so the sum is exact), other distinct counts by their largest row (never added:
the rows may count the same institution or source twice).

>>> over_final_numbers("SELECT uniqExactMerge(alerts) AS a, uniqExactMerge( institutions ) AS i, "
...                    "uniqMerge(entities) AS e FROM alerts_geo_1h GROUP BY country")
'SELECT sum(alerts) AS a, max(institutions) AS i, max(entities) AS e FROM alerts_geo_1h GROUP BY country'
>>> over_final_numbers("SELECT uniqExactMerge(alerts) FROM alerts_1h")   # not a k-anonymous view: as is
'SELECT uniqExactMerge(alerts) FROM alerts_1h'
"""

from __future__ import annotations

import os
import re
from typing import Mapping

from finsa.errors import ConfigError

__all__ = ["DEFAULT_K", "k_anonymity", "merge_groups", "subsector_view_sql", "geo_view_sql", "OTHER",
           "over_final_numbers"]

DEFAULT_K = 3
OTHER = "(other)"


def k_anonymity(value: str | int | None = None) -> int:
    """The k in force: ``value``, else ``FINSA_K_ANONYMITY``, else 3; refused below 2."""
    raw = value if value is not None else os.environ.get("FINSA_K_ANONYMITY", DEFAULT_K)
    try:
        k = int(raw)
    except (TypeError, ValueError):
        raise ConfigError("FINSA_K_ANONYMITY", [f"k: {raw!r} is not an integer"]) from None
    if k < 2:
        raise ConfigError("FINSA_K_ANONYMITY", [f"k: {k} would show single institutions (at least 2)"])
    return k


def _label(keys: list[tuple]) -> tuple:
    return tuple("+".join(sorted({key[d] for key in keys})) for d in range(len(keys[0])))


def merge_groups(sizes: Mapping[tuple, int], k: int) -> dict[tuple, tuple | None]:
    """Registry group -> the group it is shown as (None: not shown); see the module docstring."""
    large = sorted((key for key, n in sizes.items() if n >= k), key=lambda key: (sizes[key], key))
    small = sorted(key for key, n in sizes.items() if 0 < n < k)
    out: dict[tuple, tuple | None] = {key: key for key in large}
    if small:
        if sum(sizes[key] for key in small) >= k:
            label = _label(small)
            out.update({key: label for key in small})
        elif large:
            host = large[0]
            label = _label([host, *small])
            out.update({key: label for key in [host, *small]})
        else:
            out.update({key: None for key in small})
    out.update({key: None for key, n in sizes.items() if n <= 0})
    return dict(sorted(out.items()))


_K_VIEW = re.compile(r"\balerts_(geo|subsector)_1h\b")
_SKETCH_MERGE = re.compile(r"\b(uniqExactMerge|uniqMerge)\(\s*(`?)(\w+)\2\s*\)")


def over_final_numbers(sql: str) -> str:
    """``sql`` reading the k-anonymous tenant views' final numbers where it merges sketch states
    of ``alerts_geo_1h`` / ``alerts_subsector_1h`` (see the module docstring)."""
    if not _K_VIEW.search(sql):
        return sql

    def final(m: re.Match) -> str:
        column = m.group(3)
        return f"{'sum' if column == 'alerts' else 'max'}({m.group(2)}{column}{m.group(2)})"

    return _SKETCH_MERGE.sub(final, sql)


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _array(values: list[str]) -> str:
    return "[" + ", ".join(_quote(v) for v in values) + "]"


def subsector_view_sql(database: str, institutions: list[tuple[str, str]], k: int) -> str:
    """The k-anonymous SELECT of ``alerts_subsector_1h`` for a tenant view; ``institutions``
    are the registry's (subsector, region) pairs, one per institution."""
    sizes: dict[tuple, int] = {}
    for subsector, region in institutions:
        sizes[(subsector, region)] = sizes.get((subsector, region), 0) + 1
    groups = {key: label for key, label in merge_groups(sizes, k).items() if label is not None}
    keys = [f"{s}\t{r}" for s, r in groups]
    subs, regions = [label[0] for label in groups.values()], [label[1] for label in groups.values()]
    key = "concat(subsector, '\\t', region)"
    return f"""SELECT hour, g_subsector AS subsector, g_region AS region, technique, severity,
       uniqExactMerge(s_alerts) AS alerts, uniqMerge(s_entities) AS entities, max(s_max_score) AS max_score,
       uniqExactMerge(s_institutions) AS institutions
FROM (SELECT hour, transform({key}, {_array(keys)}, {_array(subs)}, '') AS g_subsector,
             transform({key}, {_array(keys)}, {_array(regions)}, '') AS g_region, technique, severity,
             alerts AS s_alerts, entities AS s_entities, max_score AS s_max_score, institutions AS s_institutions
      FROM {database}.`alerts_subsector_1h`)
WHERE g_subsector != ''
GROUP BY hour, g_subsector, g_region, technique, severity"""


def geo_view_sql(database: str, k: int) -> str:
    """The k-anonymous SELECT of ``alerts_geo_1h`` for a tenant view (see the module docstring)."""
    inner = f"""SELECT hour, country, asn, anyLast(as_name) AS g_as_name, technique, severity,
           uniqExactMergeState(alerts) AS st_alerts, uniqMergeState(entities) AS st_entities,
           max(max_score) AS g_max_score, uniqExactMergeState(institutions) AS st_institutions,
           uniqExactMerge(institutions) AS n_institutions
    FROM {database}.`alerts_geo_1h` GROUP BY hour, country, asn, technique, severity"""
    return f"""SELECT hour, country, asn, g_as_name AS as_name, technique, severity,
       finalizeAggregation(st_alerts) AS alerts, finalizeAggregation(st_entities) AS entities,
       g_max_score AS max_score, n_institutions AS institutions
FROM ({inner})
WHERE n_institutions >= {int(k)}
UNION ALL
SELECT hour, '{OTHER}' AS country, toUInt32(0) AS asn, '' AS as_name, '' AS technique, toUInt8(0) AS severity,
       uniqExactMerge(st_alerts) AS alerts, uniqMerge(st_entities) AS entities, max(g_max_score) AS max_score,
       uniqExactMerge(st_institutions) AS institutions
FROM ({inner})
WHERE n_institutions < {int(k)}
GROUP BY hour
HAVING institutions >= {int(k)}"""
