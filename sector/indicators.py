"""The sector blocklist and its exports: STIX 2.1 bundle, MISP feed, plain text.

:func:`blocklist_from_campaigns` turns campaigns (alerts of several institutions linked by shared
traits) into :class:`BlockEntry` rows: attacker addresses, their prefixes, domains and
fingerprints. Confidence grows with the number of institutions that saw the campaign
(``1 - (1 - c) * 0.7 ** (institutions - 1)``, ``c`` the best detector confidence; prefixes count
half); an entry expires ``ttl_ms`` after it was last seen, and expired entries are left out.

Exports are deterministic (ids are UUIDv5 of the content, times come from the data):

* :func:`to_stix_bundle`: a STIX 2.1 bundle with one ``identity`` (the producer) and one
  ``indicator`` per entry (``[ipv4-addr:value = '...']``, ``ipv6-addr``, ``domain-name``, and
  ``[x-finsa-fingerprint:value = 'ja4:...']`` for fingerprints), ``valid_until`` = expiry,
  ``confidence`` 0-100. :mod:`finsa.sector.intel_feeds` reads it back.
* :func:`to_misp_feed`: the files of a MISP feed folder, ``manifest.json`` and one event
  ``<uuid>.json`` whose attributes carry ``to_ids: true`` (expiry in the comment: MISP has none).
* :func:`to_plain`: one value per line, ``#`` comment header, for firewalls.

>>> e = BlockEntry("ip", "203.0.113.9", 0.9, 0, 60_000, 86_400_000)
>>> bundle = to_stix_bundle([e], now_ms=60_000)
>>> [o["pattern"] for o in bundle["objects"] if o["type"] == "indicator"]
["[ipv4-addr:value = '203.0.113.9']"]
>>> to_plain([e], now_ms=60_000).splitlines()[-1]
'203.0.113.9'
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from finsa.sector.campaigns import Campaign

__all__ = ["BlockEntry", "blocklist_from_campaigns", "to_stix_bundle", "to_misp_feed", "write_misp_feed",
           "to_plain", "stix_pattern", "NAMESPACE"]

NAMESPACE = uuid.UUID("6f1c1d0e-5a37-4c3e-9a51-1f1a5e7d0b42")  # finsa's UUIDv5 namespace
_MISP_TYPES = {"ip": "ip-src", "net": "ip-src", "domain": "domain", "ja3": "ja3-fingerprint-md5",
               "ja4": "ja4-fingerprint", "jarm": "jarm-fingerprint", "hassh": "hassh-md5"}


@dataclass(frozen=True)
class BlockEntry:
    """One value to block. ``kind``: ip, net, domain, ja3, ja4, jarm or hassh."""

    kind: str
    value: str
    confidence: float
    first_seen_ms: int
    last_seen_ms: int
    expires_ms: int
    sources: tuple[str, ...] = ()  # campaign ids
    institutions: int = 0

    def row(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "confidence": round(self.confidence, 4),
                "first_seen_ms": self.first_seen_ms, "last_seen_ms": self.last_seen_ms,
                "expires_ms": self.expires_ms, "sources": list(self.sources), "institutions": self.institutions}


def _fingerprint_kind(value: str) -> str:
    return "ja3" if len(value) == 32 and all(c in "0123456789abcdef" for c in value.lower()) else "ja4"


def blocklist_from_campaigns(campaigns: Iterable[Campaign], now_ms: int, ttl_ms: int = 7 * 86_400_000,
                             min_institutions: int = 2) -> list[BlockEntry]:
    """The live blocklist of the given campaigns, merged per value, sorted by (kind, value)."""
    merged: dict[tuple[str, str], BlockEntry] = {}
    for c in campaigns:
        n = len(c.institutions)
        expires = c.last_seen_ms + ttl_ms
        if n < min_institutions or expires <= now_ms:
            continue
        best = max(c.addresses.values(), default=0.5)
        boost = lambda conf, n=n: 1 - (1 - conf) * 0.7 ** (n - 1)  # noqa: E731 - a shorthand used twice below
        values = [("ip", a, boost(conf)) for a, conf in c.addresses.items()]
        values += [("net", p, boost(best) / 2) for p in c.prefixes]
        values += [("domain", d, boost(0.6)) for d in c.domains]
        values += [(_fingerprint_kind(f), f.lower(), boost(0.6)) for f in c.fingerprints]
        for kind, value, conf in values:
            entry = BlockEntry(kind, value, conf, c.first_seen_ms, c.last_seen_ms, expires, (c.campaign_id,), n)
            old = merged.get((kind, value))
            if old is not None:
                entry = replace(old, confidence=max(old.confidence, conf),
                                first_seen_ms=min(old.first_seen_ms, c.first_seen_ms),
                                last_seen_ms=max(old.last_seen_ms, c.last_seen_ms),
                                expires_ms=max(old.expires_ms, expires),
                                sources=tuple(sorted({*old.sources, c.campaign_id})),
                                institutions=max(old.institutions, n))
            merged[(kind, value)] = entry
    return [merged[k] for k in sorted(merged)]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _uuid(*parts: Any) -> str:
    return str(uuid.uuid5(NAMESPACE, "|".join(str(p) for p in parts)))


def stix_pattern(entry: BlockEntry) -> str:
    """The STIX pattern of one entry.

    >>> stix_pattern(BlockEntry("net", "2001:db8::/48", 0.4, 0, 0, 1))
    "[ipv6-addr:value = '2001:db8::/48']"
    """
    value = entry.value.replace("\\", "\\\\").replace("'", "\\'")
    if entry.kind in ("ip", "net"):
        version = ipaddress.ip_network(entry.value, strict=False).version
        return f"[ipv{version}-addr:value = '{value}']"
    if entry.kind == "domain":
        return f"[domain-name:value = '{value}']"
    return f"[x-finsa-fingerprint:value = '{entry.kind}:{value}']"


def to_stix_bundle(entries: Iterable[BlockEntry], now_ms: int, producer: str = "finsa sector centre") -> dict:
    """A STIX 2.1 bundle of the entries (see the module docstring)."""
    identity_id = "identity--" + _uuid("identity", producer)
    created = _iso(0)
    objects: list[dict] = [{"type": "identity", "spec_version": "2.1", "id": identity_id, "created": created,
                            "modified": created, "name": producer, "identity_class": "organization",
                            "sectors": ["financial-services"]}]
    for e in entries:
        valid_from = _iso(e.first_seen_ms)
        objects.append({
            "type": "indicator", "spec_version": "2.1", "id": "indicator--" + _uuid("indicator", e.kind, e.value),
            "created_by_ref": identity_id, "created": valid_from, "modified": _iso(max(e.last_seen_ms, e.first_seen_ms)),
            "name": f"{e.kind} {e.value}", "description": f"seen at {e.institutions} institutions; campaigns "
                                                          f"{', '.join(e.sources)}",
            "indicator_types": ["malicious-activity"], "pattern": stix_pattern(e), "pattern_type": "stix",
            "pattern_version": "2.1", "valid_from": valid_from,
            "valid_until": _iso(max(e.expires_ms, e.first_seen_ms + 1)),
            "confidence": int(round(100 * min(1.0, max(0.0, e.confidence)))),
            "labels": [e.kind],
        })
    ids = sorted(o["id"] for o in objects)
    return {"type": "bundle", "id": "bundle--" + _uuid("bundle", now_ms, *ids), "objects": objects}


def to_misp_feed(entries: Iterable[BlockEntry], now_ms: int, org: str = "finsa sector centre") -> dict[str, dict]:
    """File name -> JSON document of a MISP feed folder (manifest.json and one event)."""
    entries = list(entries)
    # the event's id follows its content, not the clock: a manifest and the event it names, fetched
    # a moment apart, agree; a grown blocklist is a new event
    event_uuid = _uuid("misp-event", *(f"{e.kind}:{e.value}" for e in entries))
    stamp = str(now_ms // 1000)
    orgc = {"name": org, "uuid": _uuid("org", org)}
    tags = [{"name": "tlp:amber", "colour": "#FFC000"}, {"name": "finsa:sector-blocklist", "colour": "#336699"}]
    attributes = [{
        "uuid": _uuid("misp-attribute", e.kind, e.value), "type": _MISP_TYPES.get(e.kind, "other"),
        "category": "Network activity", "to_ids": True, "value": e.value, "timestamp": stamp,
        "first_seen": _iso(e.first_seen_ms), "last_seen": _iso(e.last_seen_ms), "distribution": "0",
        "comment": f"confidence {e.confidence:.2f}; expires {_iso(e.expires_ms)}; {e.institutions} institutions",
    } for e in entries]
    info = f"finsa sector blocklist {_iso(now_ms)}"
    date = _iso(now_ms)[:10]
    event = {"uuid": event_uuid, "info": info, "date": date, "timestamp": stamp, "publish_timestamp": stamp,
             "published": True, "analysis": "2", "threat_level_id": "2", "distribution": "0",
             "Orgc": orgc, "Tag": tags, "Attribute": attributes}
    manifest = {event_uuid: {"info": info, "date": date, "timestamp": stamp, "analysis": 2, "threat_level_id": 2,
                             "Orgc": orgc, "Tag": tags}}
    return {"manifest.json": manifest, f"{event_uuid}.json": {"Event": event}}


def write_misp_feed(directory: str | Path, feed: dict[str, dict]) -> list[Path]:
    """Write the files of :func:`to_misp_feed` into ``directory`` (created when missing)."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, doc in sorted(feed.items()):
        path = folder / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")
        tmp.replace(path)
        paths.append(path)
    return paths


def to_plain(entries: Iterable[BlockEntry], now_ms: int, kinds: Iterable[str] = ("ip", "net", "domain")) -> str:
    """One value per line (addresses, prefixes, domains by default), after a comment header."""
    wanted = set(kinds)
    values = sorted({e.value for e in entries if e.kind in wanted})
    return "\n".join([f"# finsa sector blocklist, {_iso(now_ms)}, {len(values)} entries", *values]) + "\n"
