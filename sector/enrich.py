"""Enrichment of alerts: who the institution is, what was hit, where the attacker sits.

The **inventory file** (TOML, strict: unknown keys and unknown institutions are refused, every
problem listed at once) names each institution's critical services and the third-party providers
the sector depends on::

    [[asset]]
    institution = "pay-a"           # an id of the institution registry
    service = "card gateway"        # free text
    kind = "payment_gateway"        # core_banking | payment_gateway | trading | online_banking
                                    # | swift | card_processing | market_data | dns
                                    # | remote_access (SSH/RDP/VPN gateways) | other
    address = "198.51.100.10"       # address or CIDR, as the sector sees it (the pseudonym
                                    # when the institution pseudonymises internal addresses)
    ports = [443]                   # empty: any port; an alert on the host as a whole (a
                                    # port scan's target) matches every asset at the address
    criticality = 5                 # 1 minor .. 5 systemic
    exposed = true                  # reachable from the internet

    [[provider]]
    id = "cloud-x"
    name = "Cloud X"
    kind = "cloud"                  # cloud | payment_processor | dns | market_data | network | other
    networks = ["203.0.113.0/24"]
    domains = ["cloudx.example"]
    dependents = ["pay-a", "bank-b"]

An attack on a provider (an alert whose target lies in its networks, or raised by a sensor whose
``institution_id`` is the provider's id) concerns every dependent: :class:`ProviderMap` says which.

:meth:`Enricher.enrich` adds columns to an alert batch, looking each distinct value up once:
subsector, region, criticality, entity_country, entity_asn, entity_prefix (/24 or /48),
target_kind, target_criticality, provider, intel (matched indicator value), domain, fingerprint.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np
from pydantic import Field, field_validator

from finsa.errors import ConfigError
from finsa.institutions import Registry
from finsa.settings import Strict, parse_config, read_document
from finsa.sector.geo import GeoLookup, normalise_address, packed_address
from finsa.sector.intel_feeds import IntelIndex

__all__ = ["Asset", "Provider", "Inventory", "load_inventory", "parse_inventory", "AssetMap",
           "ProviderMap", "Enricher", "address_prefix", "split_target", "ENRICHED_COLUMNS"]

ENRICHED_COLUMNS = ("subsector", "region", "criticality", "entity_country", "entity_asn",
                    "entity_prefix", "target_kind", "target_criticality", "provider", "intel",
                    "domain", "fingerprint")
_DOMAIN_KEYS = ("dns_query", "tls_sni", "http_host", "domain")
_FINGERPRINT_KEYS = ("tls_ja4", "ja4", "ja3", "jarm", "hassh", "fingerprint")


def _network(value: str) -> str:
    ipaddress.ip_network(value, strict=False)
    return value


class Asset(Strict):
    """A critical service of one institution."""

    institution: str
    service: str
    kind: Literal["core_banking", "payment_gateway", "trading", "online_banking", "swift",
                  "card_processing", "market_data", "dns", "remote_access", "other"] = "other"
    address: str
    ports: list[int] = Field(default_factory=list)
    criticality: int = Field(3, ge=1, le=5)
    exposed: bool = True

    @field_validator("address")
    @classmethod
    def _address_parse(cls, value: str) -> str:
        return _network(value)

    @field_validator("ports")
    @classmethod
    def _ports_range(cls, value: list[int]) -> list[int]:
        if any(not 0 < p < 65536 for p in value):
            raise ValueError("ports must be 1..65535")
        return value


class Provider(Strict):
    """A third party that several institutions depend on (concentration risk)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    name: str
    kind: Literal["cloud", "payment_processor", "dns", "market_data", "network", "other"] = "other"
    networks: list[str] = Field(default_factory=list)
    domains: list[str] = Field(default_factory=list)
    dependents: list[str] = Field(default_factory=list)

    @field_validator("networks")
    @classmethod
    def _networks_parse(cls, value: list[str]) -> list[str]:
        return [_network(v) for v in value]


class Inventory(Strict):
    """The inventory file: ``[[asset]]`` and ``[[provider]]`` tables."""

    asset: list[Asset] = Field(default_factory=list)
    provider: list[Provider] = Field(default_factory=list)


def parse_inventory(data: dict, registry: Registry | None = None, source: str = "<inventory>") -> Inventory:
    inv = parse_config(data, Inventory, source=source)
    problems = []
    known = set(registry.by_id) if registry is not None else None
    if known is not None:
        problems += [f"asset.{i}.institution: unknown institution {a.institution}"
                     for i, a in enumerate(inv.asset) if a.institution not in known]
        problems += [f"provider.{i}.dependents: unknown institution {d}"
                     for i, p in enumerate(inv.provider) for d in p.dependents if d not in known]
    ids = [p.id for p in inv.provider]
    problems += [f"provider.id: duplicate id {d}" for d in sorted({i for i in ids if ids.count(i) > 1})]
    if problems:
        raise ConfigError(source, problems)
    return inv


def load_inventory(path: str | Path, registry: Registry | None = None) -> Inventory:
    """Read and validate an inventory file (institutions checked against ``registry``)."""
    return parse_inventory(read_document(path), registry, source=str(path))


def address_prefix(address: str, v4_bits: int = 24, v6_bits: int = 48) -> str:
    """The /24 (IPv4) or /48 (IPv6) network of an address; "" when not an address.

    >>> address_prefix("198.51.100.77"), address_prefix("2001:db8:1:2::5"), address_prefix("x")
    ('198.51.100.0/24', '2001:db8:1::/48', '')
    """
    packed = packed_address(address)
    if packed is None:
        return ""
    bits = v4_bits if len(packed) == 4 else v6_bits
    value = int.from_bytes(packed, "big") >> (len(packed) * 8 - bits) << (len(packed) * 8 - bits)
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    return f"{socket.inet_ntop(family, value.to_bytes(len(packed), 'big'))}/{bits}"


def split_target(target: str) -> tuple[str, int]:
    """(address, port) of an alert's target text (``a.b.c.d:p``, ``[v6]:p`` or an address).

    >>> split_target("10.0.0.5:443"), split_target("[2001:db8::1]:22"), split_target("many")
    (('10.0.0.5', 443), ('2001:db8::1', 22), ('many', 0))
    """
    if target.startswith("["):
        host, _, port = target[1:].partition("]:")
        return host, int(port) if port.isdigit() else 0
    if target.count(":") == 1:
        host, _, port = target.partition(":")
        return host, int(port) if port.isdigit() else 0
    return target, 0


class AssetMap:
    """Which asset of an institution an address:port is."""

    def __init__(self, assets: Iterable[Asset] = ()) -> None:
        self.assets = list(assets)
        self._by_inst: dict[str, list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Asset]]] = {}
        for a in self.assets:
            self._by_inst.setdefault(a.institution, []).append((ipaddress.ip_network(a.address, strict=False), a))

    def find(self, institution: str, address: str, port: int = 0) -> Asset | None:
        """The first asset of ``institution`` at ``address`` serving ``port``; port 0 (the host as
        a whole, e.g. a port scan's target) matches the first asset at the address."""
        candidates = self._by_inst.get(institution)
        text = normalise_address(address) if candidates else None
        if text is None or candidates is None:
            return None
        ip = ipaddress.ip_address(text)
        for net, asset in candidates:
            if ip in net and (not asset.ports or port == 0 or port in asset.ports):
                return asset
        return None

    def exposed_kinds(self, institution: str) -> set[str]:
        return {a.kind for _, a in self._by_inst.get(institution, []) if a.exposed}

    def institutions_exposing(self, kinds: Iterable[str]) -> list[str]:
        wanted = set(kinds)
        return sorted(i for i, pairs in self._by_inst.items()
                      if any(a.exposed and a.kind in wanted for _, a in pairs))


class ProviderMap:
    """Providers by address and domain, and the institutions that depend on each."""

    def __init__(self, providers: Iterable[Provider] = ()) -> None:
        self.providers = {p.id: p for p in providers}
        self._nets = [(ipaddress.ip_network(n, strict=False), p.id) for p in self.providers.values()
                      for n in p.networks]

    def of_address(self, address: str) -> str:
        text = normalise_address(address) if self._nets else None
        if text is None:
            return ""
        ip = ipaddress.ip_address(text)
        return next((pid for net, pid in self._nets if ip in net), "")

    def of_domain(self, name: str) -> str:
        name = name.lower().rstrip(".")
        for pid, p in self.providers.items():
            if any(name == d or name.endswith("." + d) for d in p.domains):
                return pid
        return ""

    def dependents(self, provider_id: str) -> list[str]:
        p = self.providers.get(provider_id)
        return list(p.dependents) if p else []


def _evidence_values(evidence: str) -> tuple[str, str]:
    """(domain, fingerprint) named in an alert's evidence JSON, if any."""
    if not evidence or not any(k in evidence for k in ("ja", "hassh", "finger", "dns", "sni", "host", "domain")):
        return "", ""
    try:
        doc = json.loads(evidence)
    except ValueError:
        return "", ""
    feats = doc.get("features", {}) if isinstance(doc, dict) else {}
    pools = [feats if isinstance(feats, dict) else {}, doc if isinstance(doc, dict) else {}]
    pick = lambda keys: next((str(p[k]) for p in pools for k in keys if isinstance(p.get(k), str) and p[k]), "")  # noqa: E731 - a shorthand used twice below
    return pick(_DOMAIN_KEYS), pick(_FINGERPRINT_KEYS)


class Enricher:
    """Adds the :data:`ENRICHED_COLUMNS` to alert batches; each distinct value is looked up once."""

    def __init__(self, registry: Registry, assets: Sequence[Asset] = (), providers: Sequence[Provider] = (),
                 geo: GeoLookup | None = None) -> None:
        self.use_registry(registry)
        self.assets = AssetMap(assets)
        self.providers = ProviderMap(providers)
        self.geo = geo or GeoLookup()

    def use_registry(self, registry: Registry) -> None:
        self.registry = registry
        self.institutions = registry.by_id

    def enrich(self, columns: dict[str, np.ndarray], intel: IntelIndex | None = None,
               now_ms: int = 0) -> dict[str, np.ndarray]:
        """The enrichment columns for the ALERT ``columns`` given (same length)."""
        n = len(columns["institution_id"])
        out = {name: np.empty(n, dtype=object) for name in ENRICHED_COLUMNS}
        out["criticality"] = np.zeros(n, dtype=np.int64)
        out["target_criticality"] = np.zeros(n, dtype=np.int64)
        insts, inv = np.unique(columns["institution_id"].astype(str), return_inverse=True)
        meta = [self.institutions.get(i) for i in insts]
        out["subsector"][:] = np.array([m.subsector if m else "unknown" for m in meta], dtype=object)[inv]
        out["region"][:] = np.array([m.region if m else "unknown" for m in meta], dtype=object)[inv]
        out["criticality"][:] = np.array([m.criticality if m else 3 for m in meta])[inv]
        ents, inv = np.unique(columns["entity"].astype(str), return_inverse=True)
        geo = [self.geo.lookup(e) for e in ents]
        out["entity_country"][:] = np.array([g.country for g in geo], dtype=object)[inv]
        out["entity_asn"][:] = np.array([g.asn for g in geo], dtype=object)[inv]
        out["entity_prefix"][:] = np.array([address_prefix(e) for e in ents], dtype=object)[inv]
        ent_intel = [intel.match(e, now_ms) if intel is not None else None for e in ents]
        out["intel"][:] = np.array([i.value if i else "" for i in ent_intel], dtype=object)[inv]
        for row in range(n):
            self._row(columns, out, row, intel, now_ms)
        return out

    def _row(self, columns: dict, out: dict, row: int, intel: IntelIndex | None, now_ms: int) -> None:
        inst = str(columns["institution_id"][row])
        host, port = split_target(str(columns["target"][row]))
        asset = self.assets.find(inst, host, port)
        out["target_kind"][row] = asset.kind if asset else ""
        out["target_criticality"][row] = asset.criticality if asset else 0
        domain, fingerprint = _evidence_values(str(columns["evidence"][row]))
        out["domain"][row], out["fingerprint"][row] = domain, fingerprint
        provider = inst if inst in self.providers.providers else self.providers.of_address(host)
        out["provider"][row] = provider or (self.providers.of_domain(domain) if domain else "")
        if intel is not None and not out["intel"][row]:
            hit = (intel.match_domain(domain, now_ms) if domain else None) or (
                intel.match_fingerprint(fingerprint, now_ms) if fingerprint else None)
            out["intel"][row] = hit.value if hit else ""
