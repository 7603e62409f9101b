"""Threat intelligence feeds: STIX 2.1 bundles and MISP JSON, loaded, hot-reloaded and matched.

A feed is a list of files or folders (every ``*.json`` inside, not recursive). Each file is either a
STIX 2.1 bundle (``"type": "bundle"``, indicator objects with ``pattern_type: stix``) or a MISP
event (``{"Event": {...}}``, as in a MISP feed folder; a feed's ``manifest.json`` is skipped).
:meth:`IntelFeed.refresh` polls modification times and sizes (:func:`finsa.watch.file_stamp`) and
re-reads only changed files; a file that cannot be used is skipped whole, counted, and its reason
kept in :attr:`IntelFeed.problems` while the indicators of the other files stay in force. Matching (:class:`IntelIndex`) covers
addresses (exact and CIDR, IPv4 and IPv6), domains (a listed domain matches its subdomains) and
TLS/SSH fingerprints; an indicator past its ``valid_until`` does not match.

STIX patterns understood: comparisons ``[ipv4-addr:value = '...']``, ``ipv6-addr``,
``domain-name``, ``x-finsa-fingerprint:value`` (ja3/ja4/jarm/hassh, finsa's own export), joined by
``OR``; a pattern with ``AND``, ``FOLLOWEDBY`` or other operators is skipped (reason
``unsupported_pattern``). MISP attribute types: ip-dst, ip-src (and ``|port``), domain, hostname,
domain|ip, ja3-fingerprint-md5, ja4-fingerprint, jarm-fingerprint, hassh-md5; attributes with
``to_ids: false`` are context, not indicators, and are skipped.

>>> ind = parse_document({"type": "bundle", "id": "bundle--1", "objects": [{"type": "indicator",
...     "id": "indicator--a", "pattern_type": "stix", "valid_from": "2024-01-01T00:00:00Z",
...     "pattern": "[ipv4-addr:value = '198.51.100.0/24'] OR [domain-name:value = 'evil.example']"}]})
>>> index = IntelIndex(ind)
>>> index.match("198.51.100.7", 0).value, index.match("www.evil.example", 0).value
('198.51.100.0/24', 'evil.example')
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

from finsa.errors import FinsaError
from finsa.metrics import REGISTRY
from finsa.sector.geo import normalise_address
from finsa.watch import file_stamp

__all__ = ["Indicator", "IntelIndex", "IntelFeed", "IntelError", "parse_document",
           "parse_stix", "parse_misp", "FINGERPRINT_KINDS"]

FILES = REGISTRY.counter("finsa_intel_files_total", "Intel files read, by outcome", ["outcome"])
SKIPPED = REGISTRY.counter("finsa_intel_indicators_skipped_total", "Intel entries not used, by reason", ["reason"])
FINGERPRINT_KINDS = ("ja3", "ja4", "jarm", "hassh")
_MISP_TYPES = {"ip-dst": "ip", "ip-src": "ip", "ip-dst|port": "ip", "ip-src|port": "ip",
               "domain": "domain", "hostname": "domain", "domain|ip": "domain",
               "ja3-fingerprint-md5": "ja3", "ja4-fingerprint": "ja4", "jarm-fingerprint": "jarm",
               "hassh-md5": "hassh"}
_STIX_TYPES = {"ipv4-addr:value": "ip", "ipv6-addr:value": "ip", "domain-name:value": "domain",
               "x-finsa-fingerprint:value": "fingerprint"}
_COMPARISON = re.compile(r"\[\s*([a-z0-9-]+:value)\s*=\s*'((?:[^'\\]|\\.)*)'\s*\]")


class IntelError(FinsaError):
    """A feed file could not be used; ``reason`` is a short tag."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class Indicator:
    """One indicator: ``kind`` is ip (address or CIDR), domain or a fingerprint kind."""

    kind: str
    value: str
    source: str = ""
    ref: str = ""  # STIX id or MISP attribute uuid
    confidence: float = 0.5
    valid_until_ms: int | None = None
    labels: tuple[str, ...] = ()

    def live(self, now_ms: int) -> bool:
        return self.valid_until_ms is None or now_ms < self.valid_until_ms


def _time_ms(text: Any) -> int | None:
    if text in (None, ""):
        return None
    if isinstance(text, (int, float)) or str(text).isdigit():
        return int(float(text) * 1000)
    return int(datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp() * 1000)


def _clean(kind: str, value: str) -> str | None:
    """Canonical value, or None when it does not parse as its kind."""
    value = value.strip()
    if kind == "ip":
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            return None
        if net.prefixlen == net.max_prefixlen:
            return normalise_address(str(net.network_address))
        return str(net)
    if kind == "domain":
        value = value.lower().rstrip(".")
        return value if re.fullmatch(r"[a-z0-9_*-]+(\.[a-z0-9_-]+)+", value) else None
    return value.lower() if re.fullmatch(r"[0-9a-zA-Z_-]{8,}", value) else None


def _add(out: list[Indicator], kind: str, value: str, **meta: Any) -> None:
    clean = _clean("fingerprint" if kind in FINGERPRINT_KINDS else kind, value)
    if clean is None:
        SKIPPED.inc(reason="bad_value")
        return
    out.append(Indicator(kind, clean.lstrip("*."), **meta))


def parse_stix(doc: dict, source: str = "") -> list[Indicator]:
    """Indicators of a STIX 2.1 bundle; raises IntelError when it is not one."""
    if doc.get("type") != "bundle" or not isinstance(doc.get("objects"), list):
        raise IntelError("not_stix_bundle", "needs type bundle and an objects list")
    out: list[Indicator] = []
    for obj in doc["objects"]:
        if not isinstance(obj, dict) or obj.get("type") != "indicator":
            continue
        pattern = obj.get("pattern")
        if obj.get("pattern_type", "stix") != "stix" or not isinstance(pattern, str):
            SKIPPED.inc(reason="not_stix_pattern")
            continue
        comparisons = _COMPARISON.findall(pattern)
        rest = _COMPARISON.sub("", pattern).replace("OR", "").strip()
        if not comparisons or rest:
            SKIPPED.inc(reason="unsupported_pattern")
            continue
        try:
            until = _time_ms(obj.get("valid_until"))
        except ValueError:
            SKIPPED.inc(reason="bad_time")
            continue
        conf = obj.get("confidence")
        meta = dict(source=source, ref=str(obj.get("id", "")), valid_until_ms=until,
                    confidence=(float(conf) / 100 if isinstance(conf, (int, float)) else 0.5),
                    labels=tuple(str(x) for x in obj.get("labels", []) or []))
        for path, value in comparisons:
            kind = _STIX_TYPES.get(path)
            if kind is None:
                SKIPPED.inc(reason="unsupported_type")
                continue
            if kind == "fingerprint":
                name, _, value = value.partition(":")
                kind = name if name in FINGERPRINT_KINDS else "ja4"
            _add(out, kind, value.replace("\\'", "'"), **meta)
    return out


def _misp_attributes(event: dict) -> Iterable[dict]:
    yield from event.get("Attribute", []) or []
    for obj in event.get("Object", []) or []:
        yield from (obj.get("Attribute", []) or []) if isinstance(obj, dict) else []


def parse_misp(doc: dict, source: str = "") -> list[Indicator]:
    """Indicators of a MISP event document; raises IntelError when it is not one."""
    event = doc.get("Event")
    if not isinstance(event, dict):
        raise IntelError("not_misp_event", "needs an Event object")
    tags = tuple(str(t.get("name", "")) for t in event.get("Tag", []) or [] if isinstance(t, dict))
    out: list[Indicator] = []
    for attr in _misp_attributes(event):
        kind = _MISP_TYPES.get(str(attr.get("type", ""))) if isinstance(attr, dict) else None
        if kind is None:
            SKIPPED.inc(reason="unsupported_type")
            continue
        if str(attr.get("to_ids", True)).lower() in ("false", "0"):
            SKIPPED.inc(reason="not_to_ids")
            continue
        value = str(attr.get("value", ""))
        value = value.split("|")[0] if "|" in value else value
        # MISP has no expiry (first_seen/last_seen say when it was observed): valid until replaced
        _add(out, kind, value, source=source, ref=str(attr.get("uuid", "")), confidence=0.7, labels=tags)
    return out


def parse_document(doc: Any, source: str = "") -> list[Indicator]:
    """Indicators of a STIX bundle or a MISP event, whichever ``doc`` is."""
    if not isinstance(doc, dict):
        raise IntelError("not_an_object", "the document must be a JSON object")
    if doc.get("type") == "bundle":
        return parse_stix(doc, source)
    if "Event" in doc:
        return parse_misp(doc, source)
    raise IntelError("unknown_format", "neither a STIX bundle nor a MISP event")


def read_file(path: Path) -> list[Indicator]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise IntelError("unreadable", str(exc.strerror or exc)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntelError("bad_json", str(exc)) from None
    return parse_document(doc, source=path.name)


class IntelIndex:
    """Look-ups over a set of indicators; ``match`` takes any value and returns the first hit."""

    def __init__(self, indicators: Iterable[Indicator] = ()) -> None:
        self.exact: dict[str, Indicator] = {}
        self.nets: dict[tuple[int, int], dict[int, Indicator]] = {}  # (version, prefix) -> net int
        self.domains: dict[str, Indicator] = {}
        self.fingerprints: dict[str, Indicator] = {}
        for ind in indicators:
            self._put(ind)

    def __len__(self) -> int:
        return len(self.exact) + sum(map(len, self.nets.values())) + len(self.domains) + len(self.fingerprints)

    def _put(self, ind: Indicator) -> None:
        if ind.kind == "ip" and "/" in ind.value:
            net = ipaddress.ip_network(ind.value)
            self.nets.setdefault((net.version, net.prefixlen), {})[int(net.network_address)] = ind
        elif ind.kind == "ip":
            self.exact[ind.value] = ind
        elif ind.kind == "domain":
            self.domains[ind.value] = ind
        else:
            self.fingerprints[ind.value] = ind

    def match_address(self, address: str, now_ms: int) -> Indicator | None:
        text = normalise_address(address)
        if text is None:
            return None
        hit = self.exact.get(text)
        if hit is not None and hit.live(now_ms):
            return hit
        if not self.nets:
            return None
        addr = ipaddress.ip_address(text)
        bits = addr.max_prefixlen
        for (version, prefix), table in self.nets.items():
            if version == addr.version:
                hit = table.get(int(addr) >> (bits - prefix) << (bits - prefix))
                if hit is not None and hit.live(now_ms):
                    return hit
        return None

    def match_domain(self, name: str, now_ms: int) -> Indicator | None:
        labels = name.lower().rstrip(".").split(".")
        for i in range(len(labels) - 1):
            hit = self.domains.get(".".join(labels[i:]))
            if hit is not None and hit.live(now_ms):
                return hit
        return None

    def match_fingerprint(self, value: str, now_ms: int) -> Indicator | None:
        hit = self.fingerprints.get(value.lower())
        return hit if hit is not None and hit.live(now_ms) else None

    def match(self, value: str, now_ms: int) -> Indicator | None:
        if not value:
            return None
        if normalise_address(value) is not None:
            return self.match_address(value, now_ms)
        return self.match_fingerprint(value, now_ms) or (
            self.match_domain(value, now_ms) if "." in value else None)


class IntelFeed:
    """Files and folders of intel, re-read when they change; :attr:`index` is the live view."""

    def __init__(self, paths: Sequence[str | Path] = ()) -> None:
        self.paths = [Path(p) for p in paths]
        self._files: dict[Path, tuple[int, int, list[Indicator]]] = {}
        self._failed: dict[Path, tuple[int, int]] = {}
        self.problems: dict[str, str] = {}
        self.index = IntelIndex()

    def _candidates(self) -> list[Path]:
        out: list[Path] = []
        for p in self.paths:
            if p.is_dir():
                out.extend(sorted(f for f in p.glob("*.json") if f.name != "manifest.json"))
            elif p.exists():
                out.append(p)
            else:
                self.problems[str(p)] = "missing"
        return out

    def refresh(self) -> bool:
        """Re-read new or changed files, drop vanished ones; True when the index changed."""
        changed = False
        seen = set()
        for path in self._candidates():
            seen.add(path)
            stamp = file_stamp(path)  # the change test of the one watcher (finsa.watch)
            if stamp is None:
                continue
            old = self._files.get(path)
            if (old is not None and old[:2] == stamp) or self._failed.get(path) == stamp:
                continue
            changed = True
            try:
                self._files[path] = (*stamp, read_file(path))
                self.problems.pop(str(path), None)
                self._failed.pop(path, None)
                FILES.inc(outcome="loaded")
            except IntelError as err:
                self._files.pop(path, None)
                self._failed[path] = stamp
                self.problems[str(path)] = err.reason
                FILES.inc(outcome=err.reason)
        for gone in set(self._files) - seen:
            del self._files[gone]
            changed = True
        for gone in set(self._failed) - seen:
            del self._failed[gone]
            self.problems.pop(str(gone), None)
        if changed:
            self.index = IntelIndex(i for _, _, inds in self._files.values() for i in inds)
        return changed

    @property
    def indicators(self) -> list[Indicator]:
        return [i for _, _, inds in self._files.values() for i in inds]
