"""A small YAML writer for Grafana's provisioning files (block style, no dependency).

Handles what provisioning documents hold: dicts, lists, strings, numbers, booleans and None.
Every string is written double-quoted with JSON escapes, which YAML reads back unchanged, so no
value can turn into a number, a boolean or a document marker.

>>> print(dump({"apiVersion": 1, "datasources": [{"name": "x", "isDefault": False, "tags": []}]}))
apiVersion: 1
datasources:
  - name: "x"
    isDefault: false
    tags: []
<BLANKLINE>
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["dump"]

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(str(value))


def _key(key: Any) -> str:
    text = str(key)
    return text if _PLAIN_KEY.match(text) and text not in ("true", "false", "null", "yes", "no") \
        else json.dumps(text)


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                out.append(f"{pad}{_key(key)}:")
                out += _lines(item, indent + 2)
            else:
                out.append(f"{pad}{_key(key)}: {_empty_or_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                nested = _lines(item, indent + 2)
                out.append(f"{pad}- {nested[0].lstrip()}")
                out += nested[1:]
            else:
                out.append(f"{pad}- {_empty_or_scalar(item)}")
    else:
        out.append(pad + _scalar(value))
    return out


def _empty_or_scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def dump(document: Any) -> str:
    """``document`` as YAML text ending in a newline."""
    return "\n".join(_lines(document, 0)) + "\n"
