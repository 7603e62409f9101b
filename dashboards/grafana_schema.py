"""Check dashboard JSON against Grafana's dashboard schema, as grafana-foundation-sdk encodes it.

The SDK's model classes are generated (by cog) from Grafana's dashboard kind schema. Decoding
JSON with ``Dashboard.from_json`` and encoding it again keeps exactly what the schema knows:
a misspelt or unknown key, or a value of the wrong shape, comes back different. Beyond that
round trip, :func:`problems` checks what the schema states in words: uid of 8 to 40 characters
of ``[A-Za-z0-9_-]``, unique panel ids, every panel inside the 24-column grid, every query with
a ``refId`` and a data source, and every ``${variable}`` a query uses defined by the dashboard.

>>> problems({"title": "x", "uid": "bad uid!", "schemaVersion": 36, "panels": []})[0]
'uid: must be 8-40 characters of [A-Za-z0-9_-]'
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from finsa.dashboards.grafana_sql import variables_used

__all__ = ["problems", "round_trip_differences"]

_UID = re.compile(r"^[A-Za-z0-9_-]{8,40}$")
_BUILTIN_VARIABLES = {"__data", "__url_time_range", "__from", "__to", "__interval", "__value",
                      "__field", "__series", "__all_variables", "__dashboard", "__org", "__user"}
register_default_plugins()


def _differences(before: Any, after: Any, path: str) -> Iterator[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after)):
            if key not in after:
                yield f"{path}.{key}: not in the schema"
            elif key in before:
                yield from _differences(before[key], after[key], f"{path}.{key}")
    elif isinstance(before, list) and isinstance(after, list):
        if len(before) != len(after):
            yield f"{path}: {len(before)} items became {len(after)}"
        for index, (b, a) in enumerate(zip(before, after)):
            yield from _differences(b, a, f"{path}[{index}]")
    elif before != after and not (isinstance(before, (int, float)) and before == after):
        yield f"{path}: {before!r} became {after!r}"


def round_trip_differences(board: dict[str, Any]) -> list[str]:
    """Where ``board`` changes when decoded and re-encoded by the SDK's schema models.

    Keys the SDK adds (defaults) are not differences; keys it drops or values it changes are.
    """
    decoded = Dashboard.from_json(json.loads(json.dumps(board)))
    again = json.loads(json.dumps(decoded, cls=JSONEncoder))
    return list(_differences(board, again, "$"))


def _panel_problems(board: dict[str, Any], defined: set[str]) -> Iterator[str]:
    seen: set[int] = set()
    for index, panel in enumerate(board.get("panels") or []):
        where = f"panels[{index}] ({panel.get('title', '?')})"
        if not panel.get("type"):
            yield f"{where}: no type"
        if panel.get("id") in seen:
            yield f"{where}: id {panel.get('id')} used twice"
        seen.add(panel.get("id"))
        pos = panel.get("gridPos") or {}
        if not all(isinstance(pos.get(k), int) for k in "hwxy"):
            yield f"{where}: gridPos needs integer h, w, x, y"
        elif pos["x"] < 0 or pos["w"] < 1 or pos["x"] + pos["w"] > 24:
            yield f"{where}: outside the 24-column grid"
        for target in panel.get("targets") or []:
            if not target.get("refId"):
                yield f"{where}: a query without refId"
            if not (target.get("datasource") or panel.get("datasource")):
                yield f"{where}: a query without data source"
            text = target.get("rawSql") or target.get("expr") or ""
            for name in sorted(variables_used(text) - defined):
                yield f"{where}: query uses undefined variable ${{{name}}}"


def problems(board: dict[str, Any]) -> list[str]:
    """Everything wrong with ``board``; empty when it conforms."""
    out = []
    if not _UID.match(str(board.get("uid", ""))):
        out.append("uid: must be 8-40 characters of [A-Za-z0-9_-]")
    if not board.get("title"):
        out.append("title: missing")
    if not isinstance(board.get("schemaVersion"), int):
        out.append("schemaVersion: must be an integer")
    templating = (board.get("templating") or {}).get("list") or []
    defined = {v.get("name") for v in templating} | _BUILTIN_VARIABLES
    out += list(_panel_problems(board, defined))
    out += round_trip_differences(board)
    return out
