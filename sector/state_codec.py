"""The sector picture's checkpoint as versioned, schema-checked JSON: data in, never code.

The checkpoint travels through a Kafka changelog topic, which any client with produce rights on
it could write, so it must not be a pickle (a pickle runs whatever callable it names). This codec
writes the picture's learned state as JSON with a handful of tagged containers and restores it
building only plain values, a few standard types (tuples, sets, deques, addresses) and the
sector classes of :data:`CLASSES`, by name from that list, with ``__new__`` and attribute
assignment: no constructor, ``__setstate__`` or import runs. Anything else is a
:class:`StateFormatError` naming the path and the reason.

The configuration (registry, inventory, GeoIP, intel feeds) is not part of the state: the
restoring worker keeps its own (see :meth:`SectorPicture.use_configuration`).

>>> from finsa.institutions import parse_registry
>>> from finsa.sector.picture import SectorPicture
>>> reg = parse_registry({"institution": [{"id": "pay-a", "name": "A", "subsector": "payment"}]})
>>> text = encode_picture(SectorPicture(reg))
>>> decode_picture(text, SectorPicture(reg)).now_ms
0
>>> try:
...     decode_picture('{"format": "finsa-sector-state", "version": 1, "picture": {"$o": "os:system", "v": {}}}',
...                    SectorPicture(reg))
... except StateFormatError as err:
...     print(err.reason)
unknown_class
"""

from __future__ import annotations

import collections
import ipaddress
import json
import math
from typing import Any

import numpy as np
from pydantic import BaseModel

from finsa.errors import FinsaError
from finsa.institutions import Institution, Registry
from finsa.sector import campaigns, early_warning, emergencies, enrich, forecast, levels
from finsa.sector.picture import SectorPicture

__all__ = ["CLASSES", "FORMAT", "VERSION", "StateFormatError", "decode_picture", "encode_picture"]

FORMAT, VERSION = "finsa-sector-state", 1
#: Parts of the picture that are configuration: the restoring worker's own copies are kept.
CONFIGURATION = ("registry", "enricher", "intel")
_MAX_DEPTH = 64
_NUMPY_KINDS = frozenset("biuf")  # bool, ints and floats only: no object arrays

#: The only classes a checkpoint may name (plain-attribute state, no code in their restoration).
CLASSES: dict[str, type] = {f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}": cls for cls in (
    SectorPicture, campaigns.Campaign, campaigns.CampaignTracker,
    early_warning.EarlyWarning, early_warning.SpreadWarner, early_warning.DriftWatch, early_warning._Pattern,
    emergencies.Emergency, emergencies.HealthWatch, emergencies._Volume, emergencies._Sensor,
    enrich.AssetMap, enrich.ProviderMap, forecast.Crossing, forecast.Holt, forecast._Series,
    forecast.VolumeForecaster, levels.LevelRow, levels.ThreatLevels, levels._Minute)}
#: Typed configuration records, restored through their own validation.
MODELS: dict[str, type[BaseModel]] = {f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}": cls
                           for cls in (Institution, Registry, enrich.Asset, enrich.Provider)}
_NAMES = {cls: name for name, cls in {**CLASSES, **MODELS}.items()}


class StateFormatError(FinsaError):
    """A checkpoint that is not a valid sector state; ``reason`` names why, ``path`` where."""

    def __init__(self, reason: str, path: str = "") -> None:
        self.reason, self.path = reason, path
        super().__init__(f"{reason} at {path or '/'}")


def encode_picture(picture: SectorPicture) -> str:
    """The picture's state (without its configuration) as JSON text."""
    state = {k: v for k, v in vars(picture).items() if k not in CONFIGURATION}
    body = {"$o": _NAMES[SectorPicture], "v": {k: _enc(v) for k, v in state.items()}}
    return json.dumps({"format": FORMAT, "version": VERSION, "picture": body}, separators=(",", ":"))


def decode_picture(text: str | bytes, running: SectorPicture) -> SectorPicture:
    """A picture from ``text`` with ``running``'s configuration, or StateFormatError.

    The picture's attributes must be exactly those of ``running`` (a checkpoint of another
    shape is refused, not half applied).
    """
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise StateFormatError("not_json") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StateFormatError("not_a_sector_state")
    if doc.get("version") != VERSION:
        raise StateFormatError("unsupported_version", "/version")
    picture = _dec(doc.get("picture"), "/picture", 0)
    if type(picture) is not SectorPicture:
        raise StateFormatError("not_a_picture", "/picture")
    expected = {k for k in vars(running) if k not in CONFIGURATION}
    if set(vars(picture)) != expected:
        raise StateFormatError("attributes_differ", "/picture")
    for name in CONFIGURATION:
        setattr(picture, name, getattr(running, name))
    return picture


def _enc(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else {"$f": repr(v)}
    if isinstance(value, list):
        return [_enc(v) for v in value]
    if isinstance(value, tuple):
        return {"$t": [_enc(v) for v in value]}
    if isinstance(value, (set, frozenset)):
        return {"$s": sorted((_enc(v) for v in value), key=_canonical)}  # sorted: same state, same text
    if isinstance(value, collections.deque):
        return {"$q": [_enc(v) for v in value], "maxlen": value.maxlen}
    if isinstance(value, dict):
        return {"$d": [[_enc(k), _enc(v)] for k, v in value.items()]}
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return {"$net": str(value)}
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return {"$ip": str(value)}
    if isinstance(value, np.ndarray) and value.dtype.kind in _NUMPY_KINDS:
        return {"$np": value.dtype.str, "v": value.tolist()}
    name = _NAMES.get(type(value))
    if name in MODELS:
        return {"$m": name, "v": value.model_dump(mode="json")}
    if name is not None:
        return {"$o": name, "v": {k: _enc(v) for k, v in _attributes(value).items()}}
    raise TypeError(f"the sector state cannot hold a {type(value).__name__}")


def _canonical(node: Any) -> str:
    return json.dumps(node, sort_keys=True)


def _attributes(obj: object) -> dict[str, Any]:
    slots = [s for c in type(obj).__mro__ for s in getattr(c, "__slots__", ())]
    if slots:
        return {s: getattr(obj, s) for s in slots if hasattr(obj, s)}
    return dict(vars(obj))


def _dec(node: Any, path: str, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise StateFormatError("too_deep", path)
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_dec(v, f"{path}/{i}", depth + 1) for i, v in enumerate(node)]
    if not isinstance(node, dict) or len(node) not in (1, 2):
        raise StateFormatError("bad_node", path)
    items = lambda key: _items(node.get(key), f"{path}/{key}", depth)  # noqa: E731 - local shorthand
    if "$t" in node:
        return tuple(items("$t"))
    if "$s" in node:
        return _hashable(set, items("$s"), path)
    if "$q" in node:
        maxlen = node.get("maxlen")
        if maxlen is not None and (not isinstance(maxlen, int) or maxlen < 0):
            raise StateFormatError("bad_maxlen", path)
        return collections.deque(items("$q"), maxlen=maxlen)
    if "$d" in node:
        pairs = items("$d")
        if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise StateFormatError("bad_pair", path)
        return _hashable(dict, pairs, path)
    return _dec_scalar_or_object(node, path, depth)


def _items(value: Any, path: str, depth: int) -> list:
    if not isinstance(value, list):
        raise StateFormatError("not_a_list", path)
    return [_dec(v, f"{path}/{i}", depth + 1) for i, v in enumerate(value)]


def _hashable(kind: type, values: list, path: str) -> Any:
    try:
        return kind(values)
    except TypeError:
        raise StateFormatError("unhashable_key", path) from None


def _dec_scalar_or_object(node: dict, path: str, depth: int) -> Any:
    try:
        if "$f" in node:
            return float(str(node["$f"]))
        if "$net" in node:
            return ipaddress.ip_network(str(node["$net"]), strict=False)
        if "$ip" in node:
            return ipaddress.ip_address(str(node["$ip"]))
        if "$np" in node:
            dtype = np.dtype(str(node["$np"]))
            if dtype.kind not in _NUMPY_KINDS:
                raise StateFormatError("bad_dtype", path)
            return np.asarray(node.get("v"), dtype=dtype)
    except (ValueError, TypeError):
        raise StateFormatError("bad_scalar", path) from None
    if "$m" in node:
        cls = MODELS.get(str(node["$m"]))
        if cls is None:
            raise StateFormatError("unknown_class", path)
        try:
            return cls.model_validate(node.get("v"))
        except ValueError:
            raise StateFormatError("bad_model", path) from None
    if "$o" in node:
        return _dec_object(node, path, depth)
    raise StateFormatError("unknown_tag", path)


def _dec_object(node: dict, path: str, depth: int) -> object:
    cls = CLASSES.get(str(node["$o"]))
    attrs = node.get("v")
    if cls is None:
        raise StateFormatError("unknown_class", path)
    if not isinstance(attrs, dict):
        raise StateFormatError("bad_object", path)
    slots = {s for c in cls.__mro__ for s in getattr(c, "__slots__", ())}
    obj: object = object.__new__(cls)  # no constructor runs: attributes come from the checked JSON
    for name, value in attrs.items():
        if not name.isidentifier() or name.startswith("__") or (slots and name not in slots):
            raise StateFormatError("bad_attribute", f"{path}/{name}")
        value = _dec(value, f"{path}/{name}", depth + 1)
        if slots:
            object.__setattr__(obj, name, value)
        else:
            obj.__dict__[name] = value
    return obj
