"""The sector blocklist and its exports: STIX 2.1 bundle, MISP feed, plain text.

:func:`blocklist_from_campaigns` turns campaigns (alerts of several institutions linked by shared
traits) into :class:`BlockEntry` rows: attacker addresses, their prefixes, domains and
fingerprints. Confidence grows with the number of institutions that saw the campaign
(``1 - (1 - c) * 0.7 ** (institutions - 1)``, ``c`` the best detector confidence; prefixes count
half); an entry expires ``ttl_ms`` after it was last seen, and expired entries are left out.

The blocklist is served to every institution and fed to every ``intel`` detector, so it must not
be cheap to poison (issue 15): only well-formed values enter (:func:`normalise`: addresses,
prefixes no wider than /16 or /32, LDH domain names, fingerprints of their documented shapes;
refusals counted in ``finsa_sector_indicators_refused_total{reason}``), and a value is served only
when corroborated: its campaign spans ``min_institutions`` institutions (whose alerts the worker
verified as signed by them) at ``min_severity`` or more, or an operator approved it. Each entry
carries its provenance: detectors, corroboration, first/last seen and how many institutions,
never which. Every export skips (and counts) an entry it cannot render instead of failing.

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
import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from finsa.metrics import REGISTRY
from finsa.sector.campaigns import Campaign

__all__ = ["BlockEntry", "blocklist_from_campaigns", "to_stix_bundle", "to_misp_feed", "write_misp_feed",
           "to_plain", "stix_pattern", "NAMESPACE", "normalise", "servable", "provenance", "REFUSED"]

REFUSED = REGISTRY.counter("finsa_sector_indicators_refused_total",
                           "Indicator values kept off the blocklist, by reason", ["reason"])
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"^(?:{_LABEL}\.)+[a-z][a-z0-9-]{{0,62}}(?<!-)$")
_FINGERPRINTS = {"ja3": re.compile(r"^[0-9a-f]{32}$"), "hassh": re.compile(r"^[0-9a-f]{32}$"),
                 "jarm": re.compile(r"^[0-9a-f]{62}$"),
                 "ja4": re.compile(r"^[tqd][0-9s]{2}[di][0-9]{4}[a-z0-9]{2}(?:_[0-9a-f]{12}){1,2}$")}
_MIN_PREFIX = {4: 16, 6: 32}  # never a wider prefix: one entry must not cut off a whole provider

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
    institutions: int = 0  # how many, never which
    detectors: tuple[str, ...] = ()
    corroboration: str = "institutions"  # or "operator": approved by the sector's operator

    def row(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "confidence": round(self.confidence, 4),
                "first_seen_ms": self.first_seen_ms, "last_seen_ms": self.last_seen_ms,
                "expires_ms": self.expires_ms, "sources": list(self.sources), "institutions": self.institutions,
                "detectors": list(self.detectors), "corroboration": self.corroboration}


def normalise(kind: str, value: Any) -> str | None:
    """The canonical text of a well-formed indicator value, or None.

    >>> normalise("ip", "2001:DB8::1"), normalise("net", "203.0.113.7/24"), normalise("net", "10.0.0.0/8")
    ('2001:db8::1', '203.0.113.0/24', None)
    >>> normalise("domain", "C2.Evil.Example."), normalise("domain", "evil..example"), normalise("ip", "x' OR 1")
    ('c2.evil.example', None, None)
    """
    if not isinstance(value, str) or not value or len(value) > 253:
        return None
    try:
        if kind == "ip":
            return str(ipaddress.ip_address(value))
        if kind == "net":
            net = ipaddress.ip_network(value, strict=False)
            return str(net) if net.prefixlen >= _MIN_PREFIX[net.version] else None
    except ValueError:
        return None
    if kind == "domain":
        name = value.lower().rstrip(".")
        return name if _DOMAIN.match(name) else None
    pattern = _FINGERPRINTS.get(kind)
    return value.lower() if pattern is not None and pattern.match(value.lower()) else None


def _fingerprint_kind(value: str) -> str:
    return "ja3" if len(value) == 32 and all(c in "0123456789abcdef" for c in value.lower()) else "ja4"


def blocklist_from_campaigns(campaigns: Iterable[Campaign], now_ms: int, ttl_ms: int = 7 * 86_400_000,
                             min_institutions: int = 2, min_severity: int = 3,
                             approved: Iterable[tuple[str, str]] = ()) -> list[BlockEntry]:
    """The live blocklist of the given campaigns, merged per value, sorted by (kind, value).

    A value is served when its campaign is corroborated (``min_institutions`` institutions and a
    severity of ``min_severity`` or more) or when ``approved`` holds its (kind, value).
    """
    merged: dict[tuple[str, str], BlockEntry] = {}
    approved = set(approved)
    for c in campaigns:
        n = len(c.institutions)
        expires = c.last_seen_ms + ttl_ms
        if expires <= now_ms:
            continue
        corroborated = n >= min_institutions and c.max_severity >= min_severity
        for kind, value, conf in _campaign_values(c, n):
            clean = normalise(kind, value)
            if clean is None:
                REFUSED.inc(reason="malformed")
                continue
            how = "institutions" if corroborated else "operator" if (kind, clean) in approved else ""
            if not how:
                REFUSED.inc(reason="uncorroborated")
                continue
            entry = BlockEntry(kind, clean, conf, c.first_seen_ms, c.last_seen_ms, expires, (c.campaign_id,), n,
                               tuple(sorted(getattr(c, "detectors", {}))), how)
            old = merged.get((kind, clean))
            merged[(kind, clean)] = entry if old is None else _merge(old, entry)
    return [merged[k] for k in sorted(merged)]


def _campaign_values(c: Campaign, n: int) -> list[tuple[str, str, float]]:
    best = max(c.addresses.values(), default=0.5)

    def boost(conf: float) -> float:
        return 1 - (1 - conf) * 0.7 ** (max(n, 1) - 1)

    values = [("ip", a, boost(conf)) for a, conf in c.addresses.items()]
    values += [("net", p, boost(best) / 2) for p in c.prefixes]
    values += [("domain", d, boost(0.6)) for d in c.domains]
    values += [(_fingerprint_kind(f), f.lower(), boost(0.6)) for f in c.fingerprints]
    return values


def _merge(old: BlockEntry, new: BlockEntry) -> BlockEntry:
    return replace(old, confidence=max(old.confidence, new.confidence),
                   first_seen_ms=min(old.first_seen_ms, new.first_seen_ms),
                   last_seen_ms=max(old.last_seen_ms, new.last_seen_ms),
                   expires_ms=max(old.expires_ms, new.expires_ms),
                   sources=tuple(sorted({*old.sources, *new.sources})),
                   institutions=max(old.institutions, new.institutions),
                   detectors=tuple(sorted({*old.detectors, *new.detectors})),
                   corroboration="institutions" if "institutions" in (old.corroboration, new.corroboration)
                   else old.corroboration)


def servable(entries: Iterable[BlockEntry]) -> list[BlockEntry]:
    """The entries an export can render: well-formed values only (others counted, left out)."""
    out = []
    for e in entries:
        clean = normalise(e.kind, e.value) if e.kind in ("ip", "net", "domain", *_FINGERPRINTS) else None
        if clean is None:
            REFUSED.inc(reason="unservable")
            continue
        out.append(e if clean == e.value else replace(e, value=clean))
    return out


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


def provenance(entry: BlockEntry) -> str:
    """Where an indicator comes from, in one line: never which institutions.

    >>> provenance(BlockEntry("ip", "203.0.113.9", 0.9, 0, 60_000, 1, ("cmp-1",), 3, ("portscan",)))
    'detectors=portscan; institutions=3; corroboration=institutions; first_seen=1970-01-01T00:00:00.000Z; last_seen=1970-01-01T00:01:00.000Z'
    """
    return (f"detectors={','.join(entry.detectors) or 'unknown'}; institutions={entry.institutions}; "
            f"corroboration={entry.corroboration}; first_seen={_iso(entry.first_seen_ms)}; "
            f"last_seen={_iso(max(entry.last_seen_ms, entry.first_seen_ms))}")


def to_stix_bundle(entries: Iterable[BlockEntry], now_ms: int, producer: str = "finsa sector centre") -> dict:
    """A STIX 2.1 bundle of the entries (see the module docstring)."""
    identity_id = "identity--" + _uuid("identity", producer)
    created = _iso(0)
    objects: list[dict] = [{"type": "identity", "spec_version": "2.1", "id": identity_id, "created": created,
                            "modified": created, "name": producer, "identity_class": "organization",
                            "sectors": ["financial-services"]}]
    for e in servable(entries):
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
            "external_references": [{"source_name": "finsa-provenance", "description": provenance(e)}],
        })
    ids = sorted(o["id"] for o in objects)
    return {"type": "bundle", "id": "bundle--" + _uuid("bundle", now_ms, *ids), "objects": objects}


def to_misp_feed(entries: Iterable[BlockEntry], now_ms: int, org: str = "finsa sector centre") -> dict[str, dict]:
    """File name -> JSON document of a MISP feed folder (manifest.json and one event)."""
    entries = servable(entries)
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
        "comment": f"confidence {e.confidence:.2f}; expires {_iso(e.expires_ms)}; {provenance(e)}",
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
    values = sorted({e.value for e in servable(entries) if e.kind in wanted})
    return "\n".join([f"# finsa sector blocklist, {_iso(now_ms)}, {len(values)} entries", *values]) + "\n"
