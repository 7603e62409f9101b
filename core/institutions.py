"""The institution registry: who is in the sector, what they are, which addresses are theirs.

One TOML file lists the institutions (``[[institution]]`` tables). Collectors use it to know
which addresses are internal, streams to enrich alerts with subsector and region, storage to
fill the ``institutions`` table, dashboards to draw the map.

>>> reg = parse_registry({"institution": [
...     {"id": "bank-a", "name": "Alpine Bank", "subsector": "bank", "region": "north",
...      "criticality": 4, "networks": ["10.1.0.0/16", "198.51.100.0/26"]}]})
>>> reg.by_id["bank-a"].subsector, reg.institution_of("198.51.100.9")
('bank', 'bank-a')

An institution may name its agent's local endpoint as its analysts' browsers reach it
(``agent_url``, an origin: scheme, host and port only). The web view then lets that
institution's analysts' pages, and only theirs, call it to read and search internal addresses in
clear (the pseudonymisation key stays at the institution):

>>> agent_origin("http://127.0.0.1:9465/"), agent_origin("HTTPS://Finsa.Example:443"), agent_origins(reg)
('http://127.0.0.1:9465', 'https://finsa.example', {})
>>> agent_origin("http://agent.bank-a.example:9465")
Traceback (most recent call last):
ValueError: plain http only to a loopback address (127.0.0.1, [::1], localhost); use https
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal, Mapping
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from finsa.errors import ConfigError
from finsa.settings import Strict, parse_config, read_document

SUBSECTORS = ("bank", "securities", "insurance", "payment", "exchange", "other")
_LOOPBACK_NAMES = ("localhost",)
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62}\.)*[a-z0-9-]{1,63}$")


def agent_origin(text: str) -> str:
    """``text`` as a web origin (``scheme://host[:port]``, no path, query, user or fragment);
    ValueError with the reason otherwise. Plain http is allowed to a loopback host only."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("give an origin such as http://127.0.0.1:9465 or https://agent.example:9465")
    if parts.username or parts.password or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("an origin only: scheme, host and port (no user, path, query or fragment)")
    host = parts.hostname.lower()
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        if not _HOSTNAME.match(host):  # it lands in a CSP header: letters, digits, dots and dashes only
            raise ValueError(f"not a host name: {host!r}") from None
        loopback = host in _LOOPBACK_NAMES
    if parts.scheme == "http" and not loopback:
        raise ValueError("plain http only to a loopback address (127.0.0.1, [::1], localhost); use https")
    shown = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}[parts.scheme]  # as a browser's Origin header writes it
    return f"{parts.scheme}://{shown}" + (f":{port}" if port not in (None, default) else "")


class Institution(Strict):
    """One institution of the sector."""

    id: str = Field(pattern=_ID.pattern)
    name: str
    subsector: Literal["bank", "securities", "insurance", "payment", "exchange", "other"]
    region: str = "unknown"
    criticality: int = Field(3, ge=1, le=5, description="1 minor .. 5 systemic")
    networks: list[str] = Field(default_factory=list, description="address ranges the institution owns")
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)
    agent_url: str | None = Field(None, description="origin of the institution's agent endpoint as its analysts' "
                                                    "browsers reach it (address translation, pcap cuts)")

    @field_validator("agent_url")
    @classmethod
    def _agent_url(cls, value: str | None) -> str | None:
        return None if value is None else agent_origin(value)

    @field_validator("networks")
    @classmethod
    def _networks_parse(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)  # raises ValueError -> listed as a problem
        return value


class Registry(Strict):
    """All institutions, with look-ups by id and by address."""

    institution: list[Institution] = Field(default_factory=list)

    @property
    def by_id(self) -> dict[str, Institution]:
        return {i.id: i for i in self.institution}

    def institution_of(self, address: str) -> str | None:
        """Id of the institution owning ``address``, or None."""
        ip = ipaddress.ip_address(address)
        for inst in self.institution:
            for net in inst.networks:
                if ip in ipaddress.ip_network(net, strict=False):
                    return inst.id
        return None


def parse_registry(data: dict, source: str = "<registry>") -> Registry:
    reg = parse_config(data, Registry, source=source)
    ids = [i.id for i in reg.institution]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(source, [f"institution.id: duplicate id {d}" for d in dupes])
    return reg


def agent_origins(registry: Registry | None) -> dict[str, str]:
    """Institution id -> its agent's origin, for the institutions that name one."""
    return {i.id: i.agent_url for i in (registry.institution if registry else []) if i.agent_url}


def check_agent_origins(origins: Mapping[str, str], source: str = "agent_origins") -> dict[str, str]:
    """A web-view option (institution id -> agent URL) checked like the registry's ``agent_url``:
    every problem listed in one ConfigError."""
    out, problems = {}, []
    for inst, url in origins.items():
        if not _ID.match(str(inst)):
            problems.append(f"{inst!r}: not an institution id")
            continue
        try:
            out[inst] = agent_origin(str(url))
        except ValueError as exc:
            problems.append(f"{inst}: {exc}")
    if problems:
        raise ConfigError(source, problems)
    return out


def load_registry(path: str | Path) -> Registry:
    """Read and validate an institutions file."""
    return parse_registry(read_document(path), source=str(path))
